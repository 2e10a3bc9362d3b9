"""Fixtures of the mechanism probe tests (helpers in mechanism_toys.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from mechanism_toys import *  # noqa: E402,F401,F403
