"""Labelled swipes from outside the project: public datasets read into swipe stores.

- `readers`: one reader class per file format, each yielding rows in the project's swipe format;
- `importer`: rows into swipe stores (one per user, or one for all), idempotent, every refusal
  counted by its error code (`python -m fl_app.datasets import FILE --stores DIR`);
- `split`: the fixed split of a dataset's users into dev / public-train / public-val / device;
- `real`: the real phone swipes beside the repository (`SWIPEFL_REAL_SWIPES`), by split.
"""
