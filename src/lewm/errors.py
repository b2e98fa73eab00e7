"""The one exception type for user errors: the CLI prints its message on one line and exits 2."""

import errno

# OS errors that are the machine's state, not a bug: a full disk, a read-only place, a
# missing permission. Writers turn them into one-line errors naming their file.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT})


class LewmError(Exception):
    """A problem with the user's input (a file, a value, a missing extra), not a bug."""
