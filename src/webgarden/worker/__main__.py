import sys

from webgarden.worker.main import main

sys.exit(main())
