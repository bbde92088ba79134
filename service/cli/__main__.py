"""``python -m service.cli ...``: the same as the ``skulens`` command."""

from service.cli import main

if __name__ == "__main__":
    main()
