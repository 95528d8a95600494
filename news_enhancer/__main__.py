import sys

from news_enhancer.cli import main

sys.exit(main())
