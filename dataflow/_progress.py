"""The one progress bar of the library: tqdm, on standard error, no monitor thread."""

from __future__ import annotations

from tqdm import tqdm


class ProgressBar(tqdm):
    """A tqdm bar that starts no monitor thread.

    tqdm's monitor thread lives until the interpreter exits, so it would show
    up as a thread left behind by whatever dataflow first drew a bar.
    """

    monitor_interval = 0
