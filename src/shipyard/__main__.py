import gc

from shipyard.cli.main import main

try:
    main()
finally:
    gc.freeze()  # skip the interpreter's final collections over every module's objects (~0.4 s at exit)
