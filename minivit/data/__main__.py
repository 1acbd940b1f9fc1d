"""What a data folder holds, and its decoded-image caches: ``python -m minivit.data DIR [--clear-cache]``.

    python -m minivit.data data/cifar10-jpg                 its layout and its caches, with their sizes
    python -m minivit.data data/cifar10-jpg --clear-cache   remove those caches (the next load decodes again)
    python -m minivit.data --clear-cache                    remove every cache under $MINIVIT_CACHE_DIR

Only cache files are removed, never the data.
"""

from __future__ import annotations

import sys

from minivit.cli import ArgumentParser, run_command
from minivit.data.cache import CACHE_DIR_VARIABLE, cache_dir, caches_of, size_text
from minivit.data.layout import find_data


def _main(argv) -> int:
    parser = ArgumentParser(prog="python -m minivit.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dirs", nargs="*", metavar="DIR", help="data folders (default: all caches under "
                                                                    f"${CACHE_DIR_VARIABLE})")
    parser.add_argument("--clear-cache", action="store_true", help="remove the caches listed")
    args = parser.parse_args(argv)
    caches = []
    for data_dir in args.data_dirs:
        layout, path = find_data(data_dir)
        print(f"{data_dir}: {'CIFAR-10 batches' if layout == 'cifar10' else 'an image folder'} in {path}")
        caches += caches_of(data_dir)
    if not args.data_dirs:
        shared = cache_dir()
        if shared is None:
            raise ValueError(f"Name the data folder(s) whose caches to list or clear: {CACHE_DIR_VARIABLE} is not set, "
                             "so the caches sit beside the data.")
        caches = sorted(shared.glob("*/*.npz"))
    total = sum(path.stat().st_size for path in caches)
    for path in caches:
        print(f"  {size_text(path.stat().st_size):>9s}  {path}")
    if not args.clear_cache:
        print(f"{len(caches)} cache file(s), {size_text(total)}" + (" (remove them: --clear-cache)" if caches else ""))
        return 0
    shared = cache_dir()
    for path in caches:
        path.unlink(missing_ok=True)
        if shared is not None and path.parent.parent == shared and not any(path.parent.iterdir()):
            path.parent.rmdir()  # the data folder's own sub-folder of MINIVIT_CACHE_DIR, now empty
    print(f"removed {len(caches)} cache file(s), {size_text(total)}")
    return 0


def main(argv=None) -> int:
    return run_command(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
