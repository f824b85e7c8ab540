"""One exception hierarchy for fedsim, so that callers (the CLI above all) map errors by type.

``FedsimError`` is the base; each subclass keeps the builtin it used to be (``ValueError``, ``RuntimeError``,
``FileNotFoundError``) as a second base so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations


class FedsimError(Exception):
    """Base class of every error fedsim raises on purpose; its message is one line meant for a user."""

    exit_code: int = 1


class ConfigError(FedsimError, ValueError):
    """A configuration key or value is invalid; the message names the key and what is allowed."""

    exit_code = 2


class DataError(FedsimError, RuntimeError):
    """Data a run needs is missing or unreadable (a dataset, a capture, a run folder)."""


class DatasetUnavailable(DataError):
    """A dataset is not installed; the message says how to get it."""


class CaptureError(DataError):
    """A capture file cannot be read (corrupt, truncated, not safetensors); the message names the file."""


class RunFolderError(DataError):
    """A path given as a run folder is not one."""

    exit_code = 2


class InvalidUpdateError(FedsimError, ValueError):
    """A client update is malformed (missing keys, wrong shapes or dtypes, non-finite values)."""


class AttackError(FedsimError, RuntimeError):
    """An attack failed (its row says ``ok: false`` with this message)."""


class AttackNotApplicable(AttackError, ValueError):
    """An attack does not apply to this update (too many images, no labels, a defense it cannot model, a model
    outside what the method handles: no BatchNorm for a BN prior, no classifier bias, ...).

    Recorded as a ``skipped`` row, not as a failure: the attack was not tried, it did not fail. Also a
    ``ValueError``: these refusals were ``ValueError`` before, and direct callers may still catch that.
    """


class FederationFailed(FedsimError, RuntimeError):
    """The Flower run did not complete; the message points at its log."""


class RoundsLost(FedsimError, RuntimeError):
    """The federation finished but some rounds aggregated nothing (or attacks lost data); says how many."""

    exit_code = 3
