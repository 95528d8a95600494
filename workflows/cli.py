"""`news-enhancer workflow ...`: run the Gmail -> Drive workflow, or show what its state store knows.

    news-enhancer workflow gmail-drive --query QUERY --folder-id ID [--since DATE] [--dry-run --out DIR]
    news-enhancer workflow status [--state PATH]

See docs/workflow.md for the Google Cloud setup and examples.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from inference.options import add_model_options
from workflows import auth
from workflows.gmail import DEFAULT_LABEL, search_query
from workflows.state import StateStore

DATA_DIR = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "news-enhancer"
DEFAULT_STATE = DATA_DIR / "gmail-drive.sqlite3"
DEFAULT_OUT = DATA_DIR / "reports"
DEFAULT_FOLDER_NAME = "News Enhancer reports"


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="news-enhancer workflow", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("gmail-drive", help="analyze newsletters from Gmail and upload reports to Drive")
    source = run.add_argument_group("what to analyze (one of)")
    source.add_argument("--query", help="Gmail search, e.g. 'from:dan@tldrnewsletter.com newer_than:2d'")
    source.add_argument("--eml", nargs="+", type=Path, metavar="FILE", help="local .eml files instead of Gmail")
    run.add_argument("--since", type=_date, metavar="YYYY-MM-DD", help="only mail after this date (adds after:)")
    run.add_argument("--limit", type=int, metavar="N", help="at most N messages (the newest N)")
    target = run.add_argument_group("where to upload (one of, unless --dry-run)")
    target.add_argument("--folder-id", help="Drive folder id (a folder this app created or may use)")
    target.add_argument(
        "--folder-name",
        nargs="?",
        const=DEFAULT_FOLDER_NAME,
        metavar="NAME",
        help=f"use (or create) the app's own folder of this name (default {DEFAULT_FOLDER_NAME!r})",
    )
    run.add_argument("--google-doc", action="store_true", help="convert reports to Google Docs on upload")
    run.add_argument("--dry-run", action="store_true", help="fetch, analyze and write reports; upload nothing")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    run.add_argument("--label-processed", action="store_true", help="label uploaded messages in Gmail")
    run.add_argument("--label", default=DEFAULT_LABEL, help=f"the label for --label-processed ({DEFAULT_LABEL})")
    run.add_argument("--state", type=Path, default=DEFAULT_STATE, help=f"state database (default {DEFAULT_STATE})")
    run.add_argument(
        "--credentials",
        type=Path,
        default=auth.DEFAULT_CLIENT_SECRETS,
        help=f"OAuth client JSON (default {auth.DEFAULT_CLIENT_SECRETS})",
    )
    run.add_argument(
        "--token", type=Path, default=auth.DEFAULT_TOKEN, help=f"token cache, mode 0600 (default {auth.DEFAULT_TOKEN})"
    )
    run.add_argument("--no-browser", action="store_true", help="print the consent URL instead of opening a browser")
    add_model_options(run)  # the same model options as `serve`, from one table
    run.add_argument("--no-progress", action="store_true", help="no progress bar (step lines still go to stderr)")

    status = commands.add_parser("status", help="list the messages the state database knows")
    status.add_argument("--state", type=Path, default=DEFAULT_STATE)
    return parser


def make_analyzer(args: argparse.Namespace) -> Any:
    """The MCP tools' analyzer (the model loads on first use, so a run with nothing to do stays fast)."""
    from inference.analyzer import Analyzer
    from inference.options import engine_config, engine_factory

    config, make_engine = engine_config(args), engine_factory(args)
    return Analyzer(config, engine=make_engine(config) if make_engine else None, max_items=args.max_items)


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    def fail(message: str) -> None:
        parser.error(f"gmail-drive: {message}")

    if bool(args.query) == bool(args.eml):
        fail("give exactly one of --query or --eml")
    if not args.dry_run and not (args.folder_id or args.folder_name):
        fail("give --folder-id ID or --folder-name [NAME] (or --dry-run to upload nothing)")
    if args.folder_id and args.folder_name:
        fail("give --folder-id or --folder-name, not both")
    if args.label_processed and args.eml:
        fail("--label-processed labels Gmail messages; it needs --query")
    if args.since and args.eml:
        fail("--since filters the Gmail search; it needs --query")


def run_gmail_drive(args: argparse.Namespace) -> int:
    from workflows import drive
    from workflows.gmail_drive import EmlFiles, GmailSource, WorkflowConfig, run

    use_gmail = bool(args.query)
    upload = not args.dry_run
    label = args.label_processed and upload
    gmail_service = drive_service = None
    if use_gmail or upload:
        scopes = auth.scopes_for(read_gmail=use_gmail, label=label, upload=upload)
        credentials = auth.get_credentials(
            scopes, client_secrets=args.credentials, token_path=args.token, open_browser=not args.no_browser
        )
        gmail_service, drive_service = auth.build_services(credentials, gmail=use_gmail, drive=upload)

    folder_id = args.folder_id
    if upload and not folder_id:
        folder_id = drive.find_or_create_folder(drive_service, args.folder_name)
        print(f"Drive folder {args.folder_name!r}: {folder_id} (or pass --folder-id {folder_id})", file=sys.stderr)

    query = search_query(args.query, args.since) if use_gmail else None
    gmail_source = GmailSource(gmail_service, query, limit=args.limit) if use_gmail else None
    source = gmail_source or EmlFiles(list(args.eml)[: args.limit])
    config = WorkflowConfig(
        out_dir=args.out,
        folder_id=folder_id,
        dry_run=args.dry_run,
        as_google_doc=args.google_doc,
        label=args.label if label else None,
        query=query,
        progress=not args.no_progress,
    )
    with StateStore(args.state) as state:
        summary = run(
            source, make_analyzer(args), state, config, drive_service=drive_service, gmail_service=gmail_service
        )
    print(f"summary: {summary.line()}")
    print(f"reports: {args.out}")
    if summary.digest_path:
        print(f"digest: {summary.digest_link or summary.digest_path}")
    for message_id, error in summary.failures:
        print(f"failed: {message_id}: {error}")
    if summary.failed:
        print("Rerun the same command to retry the failed messages; finished ones are not redone.")
    return 1 if summary.failed else 0


def show_status(args: argparse.Namespace) -> int:
    if not args.state.is_file():
        print(f"no state database at {args.state}")
        return 0
    with StateStore(args.state, exclusive=False) as state:
        rows = state.all()
    for st in rows:
        where = st.drive_link or st.report_path or ""
        error = f"  error: {st.error}" if st.error else ""
        print(f"{st.message_id}  {st.stage:<14} {(st.date or '')[:10]}  {st.subject or ''}  {where}{error}")
    print(f"{len(rows)} messages")
    return 0


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "status":
        return show_status(args)
    _check(parser, args)
    from workflows.drive import FolderError
    from workflows.retry import GaveUpError
    from workflows.state import StateLockedError

    try:
        return run_gmail_drive(args)
    except (auth.AuthError, FolderError, GaveUpError, StateLockedError) as error:
        print(f"news-enhancer workflow: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished steps are saved; rerun the same command to resume", file=sys.stderr)
        return 130
