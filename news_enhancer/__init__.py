"""The `news-enhancer` console script (the subcommand table); each subcommand lives in its own stage."""
