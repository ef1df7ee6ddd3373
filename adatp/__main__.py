"""``python -m adatp`` works like ``adatp``."""

from adatp.cli import main

if __name__ == "__main__":
    main()
