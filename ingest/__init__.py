"""Newsletter ingest: email parsing (`email`), HTML walking (`html`), per-format blocks (`html`,
`markdown`, `text`, on the shared `blocks` model), blocks -> items (`assemble`), the entry point
(`newsletter.split_newsletter`), sanitizing (`sanitize`), the Markdown report (`report`) and the
`news-enhancer split` command (`cli`)."""
