"""Gmail -> analyze -> Google Drive: the author's daily newsletter workflow.

Modules, in the order a run uses them: `auth` (OAuth token), `gmail` (search and fetch) and `mime`
(decode an email), `state` (what each message has been through), the analyzer from `mcp_server`,
`digest` (the run's overview), `drive` (upload), `gmail_drive` (the orchestration) and `cli`.
"""
