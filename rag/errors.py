"""Errors the app reports to users as one line, never as a traceback; their types say whose mistake it is, so the
API maps them to HTTP codes by type (api/errors.py), never by message."""


class RagError(Exception):
    """A failure with a message fit for the user."""


class StoreLockedError(RagError):
    """The embedded store is held by another process."""


class BadQuestion(RagError):
    """The question cannot be asked as it is (empty, too long): the asker's to fix, not the app's."""


class BadFilter(BadQuestion):
    """A search filter that cannot be applied as given (an unknown document, a date that is not one)."""


class BadCollectionName(RagError):
    """A collection name that is not letters, digits, '-' or '_'."""


class CollectionNotFound(RagError):
    """The collection does not exist (yet): reading never creates one."""


class CollectionExists(RagError):
    """A collection to be created exists already."""


class DocumentNotFound(RagError):
    """No document of the collection has that id."""


class JobNotFound(RagError):
    """No ingestion job of the collection has that id (never, or finished long ago)."""
