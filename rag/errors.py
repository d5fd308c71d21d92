"""Errors the app reports to users as one line, never as a traceback."""


class RagError(Exception):
    """A failure with a message fit for the user."""


class StoreLockedError(RagError):
    """The embedded store is held by another process."""


class BadQuestion(RagError):
    """The question cannot be asked as it is (empty, too long): the asker's to fix, not the app's."""
