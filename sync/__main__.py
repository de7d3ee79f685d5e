import sys

from sync.cli import main
from sync.memory import cap_malloc_arenas

cap_malloc_arenas()  # a process of its own: before any thread allocates
sys.exit(main())
