"""File names, the per-newsletter wrapper around the tools' report renderer, and the run digest."""

from workflows.reports import DigestEntry, newsletter_markdown, render_digest, report_name


def item(title, score, *, url=None, sponsored=False, companies=(), tags=("AI Model",), summary=""):
    return {
        "title": title,
        "url": url,
        "is_sponsored": sponsored,
        "truncated": False,
        "complete": True,
        "incomplete_reason": None,
        "relevance": None,
        "relevance_score": score,
        "summary": summary,
        "key_insights": list(tags),
        "company_names": list(companies),
    }


def report(*items):
    return {"source": None, "subject": None, "date": None, "format": "tldr", "items_found": len(items),
            "notes": [], "items": list(items), "markdown": ""}  # fmt: skip


def test_report_names_sort_by_date_and_are_safe_file_names():
    assert report_name("TLDR AI: a/b?", "2025-02-03T10:00:00+00:00", "m1") == "2025-02-03 TLDR AI a b (m1).md"
    assert report_name(None, None, "m2") == "(no subject) (m2).md"
    long = report_name("x" * 300, "2025-02-03", "m3")
    assert len(long) < 110 and long.endswith(" (m3).md")


def test_newsletter_markdown_uses_the_email_headers_and_links_the_original():
    text = newsletter_markdown(
        report(item("**Widget **", 9, url="https://example.com/w")),
        subject="TLDR AI 2025-02-03",
        sender="TLDR <dan@tldr.example>",
        date="2025-02-03T10:00:00+00:00",
        link_to="https://mail.google.com/mail/u/0/#all/m1",
    )
    assert text.startswith("# TLDR AI 2025-02-03\n")  # the email's subject, not the splitter's guess
    assert "- **Source:** TLDR \\<dan@tldr.example\\>" in text
    assert "**9/10**" in text
    assert text.rstrip().endswith(
        "[original email](https://mail.google.com/mail/u/0/#all/m1) · analyzed by news-enhancer"
    )


def test_digest_ranks_items_across_newsletters_and_leaves_out_ads_and_low_scores():
    a = DigestEntry("Issue A", "TLDR", "2025-02-03T10:00:00+00:00", report(
        item("**Low **", 3), item("Top [beta]", 10, url="https://e.x/top", companies=["Acme", "Acme"]),
        item("Ad", 10, sponsored=True, companies=["Foobar"])), "https://drive.google.com/file/d/F1/view")  # fmt: skip
    b = DigestEntry("Issue B", "Weekly", "2025-02-02T07:00:00-05:00", report(
        item("Second", 8, companies=["Acme"], summary="Why it matters.")), "2025-02-02 Issue B (m2).md")  # fmt: skip
    text = render_digest([a, b], title="Newsletter digest 2025-02-03", query="label:ai", failed=[("m9", "HTTP 500")])
    assert "2 newsletters, 4 items (1 sponsored) for the Gmail search `label:ai`." in text
    top = text.split("## Top items")[1].split("##")[0]
    assert top.index("[Top \\[beta\\]](https://e.x/top)") < top.index("Second")
    assert "(10/10)" in top and "Why it matters." in top and "Ad" not in top and "Low" not in top
    newsletters = text.split("## Newsletters")[1].split("##")[0].strip().splitlines()
    assert newsletters[0].startswith("- Issue B (`2025-02-02 Issue B (m2).md`): Weekly, 2025-02-02, 1 items")
    assert newsletters[1].startswith("- [Issue A](https://drive.google.com/file/d/F1/view): TLDR")
    assert "Acme (2), Foobar (1)" in text  # once per item, not per mention
    assert "## Not processed" in text and "- `m9`: HTTP 500" in text
