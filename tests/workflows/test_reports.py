"""File names, the per-newsletter wrapper around the tools' report renderer, and the run digest."""

from workflows.reports import TRENDING_REFS, DigestEntry, newsletter_markdown, render_digest, report_name


def item(title, score, *, url=None, sponsored=False, companies=(), tags=("AI Model",), summary="", **extra):
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
    } | extra


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
    assert "- **Source:** TLDR \\<dan@tldr.example>" in text  # not an autolink; the > needs no escape
    assert "- **Date:** 2025-02-03T10:00:00+00:00" in text
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
    assert newsletters[0].startswith("- Issue B (`2025-02-02 Issue B (m2).md`): Weekly, 2025-02-02, 1 items (1 high")
    assert newsletters[1].startswith("- [Issue A](https://drive.google.com/file/d/F1/view): TLDR")
    assert "## Not processed" in text and "- `m9`: HTTP 500" in text


def test_digest_shows_what_is_trending_across_newsletters_with_the_items():
    a = DigestEntry("Issue A", "TLDR AI", "2025-02-03T10:00:00+00:00", report(
        item("Acme ships", 9, url="https://e.x/1", companies=["Acme"], tags=["Robotics", "AI Model"]),
        item("Nvidia and acme", 4, companies=["Nvidia", "acme"], tags=["Chips"]),
        item("Ad", 10, sponsored=True, companies=["Foobar"], tags=["Ads"])), None)  # fmt: skip
    b = DigestEntry("Issue B", "Weekly", "2025-02-04T07:00:00-05:00", report(
        item("Acme again", 6, companies=["ACME", "Nvidia"], tags=["Robotics"])), None)  # fmt: skip
    text = render_digest([a, b], title="Digest")
    trending = text.split("## What is trending")[1]
    assert "across all 2 newsletters (sponsored items left out)" in trending
    companies = trending.split("### Companies")[1].split("###")[0].strip().splitlines()
    assert companies == [
        "- **Acme** (3): [Acme ships](https://e.x/1) (TLDR AI, 2025-02-03); Nvidia and acme (TLDR AI, 2025-02-03); "
        "Acme again (Weekly, 2025-02-04)",
        "- **Nvidia** (2): Nvidia and acme (TLDR AI, 2025-02-03); Acme again (Weekly, 2025-02-04)",
    ]
    tags = trending.split("### Tags")[1].strip().splitlines()
    assert [line.split(":")[0] for line in tags] == ["- **Robotics** (2)", "- **AI Model** (1)", "- **Chips** (1)"]
    assert "Foobar" not in trending and "Ads" not in trending


def test_digest_lists_at_most_a_few_items_per_name_and_counts_all():
    many = report(*[item(f"Story {n}", 5, companies=["Acme"]) for n in range(TRENDING_REFS + 3)])
    text = render_digest([DigestEntry("Issue", "TLDR", None, many, None)], title="Digest")
    line = next(line for line in text.splitlines() if line.startswith("- **Acme**"))
    assert line.startswith(f"- **Acme** ({TRENDING_REFS + 3}): Story 0 (TLDR); Story 1 (TLDR)")
    assert line.endswith("; … 3 more")


def test_digest_top_items_show_the_items_text_without_a_summary_and_mark_incomplete_answers():
    items = [
        item("Told", 9, content="Acme shipped a model. It is small and fast. " * 10),
        item("Cut", 8, complete=False, incomplete_reason="max_tokens", relevance={"expected": 8.2}),
    ]
    text = render_digest([DigestEntry("Issue", "TLDR", None, report(*items), None)], title="Digest")
    top = text.split("## Top items")[1].split("##")[0]
    assert "**Told** (9/10): Acme shipped a model. It is small and fast. Acme shipped" in top
    assert "**Cut** (8/10) ⚠ incomplete answer" in top
    assert "1 item(s) have an incomplete answer" in text
