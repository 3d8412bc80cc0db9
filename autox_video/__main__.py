"""`python -m autox_video` is the `autox-video` CLI."""

from autox_video.cli import main

raise SystemExit(main())
