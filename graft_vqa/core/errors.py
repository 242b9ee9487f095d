"""The named error hierarchy of graft-vqa.

Every error a user can meet derives from :class:`GraftVQAError` and says what to do next.
Library code raises these instead of letting a traceback from deep inside escape.
"""
from __future__ import annotations


class GraftVQAError(Exception):
    """Base class of every graft-vqa error."""


class ConfigError(GraftVQAError, ValueError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""


class ThresholdsError(ConfigError):
    """A thresholds file (``graft-vqa calibrate``) is missing, malformed or of another format version."""


# --- tiles -------------------------------------------------------------------------------------
class TileError(GraftVQAError):
    """A tile could not be read or used."""


class TileNotFoundError(TileError, FileNotFoundError):
    """The tile path does not exist."""


class UnreadableTileError(TileError):
    """The file exists but is not a readable raster (truncated, wrong format, empty)."""


class UnsupportedTileError(TileError):
    """The raster is readable but cannot be used as asked (too small, wrong bands, too large)."""


class UploadTooLargeError(UnsupportedTileError):
    """An upload to the app is larger than the server accepts (``--max-upload-mb``)."""


class AOIError(GraftVQAError, ValueError):
    """An area of interest cannot be used: unreadable, empty, without a CRS, or outside the raster."""


class AOIOutsideRasterError(AOIError):
    """The area of interest does not overlap the raster (a tile collection skips such tiles)."""


class AreaUnavailableError(TileError):
    """Areas in m² were asked for a tile without georeferencing and without ``gsd_m``."""


# --- output files ------------------------------------------------------------------------------
class OutputPathError(GraftVQAError, ValueError):
    """An output cannot be written as asked (missing folder, not writable, unknown extension or
    CRS); checked before any work, so nothing is computed or written."""


# --- weights and checkpoints -------------------------------------------------------------------
class WeightsError(GraftVQAError):
    """Model weights could not be resolved or loaded."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No weights file was found; the message says which file to put where."""


class CheckpointError(WeightsError):
    """A checkpoint file is the wrong model, truncated, or needs explicit trust to unpickle."""


# --- planning and running programs -------------------------------------------------------------
class PlannerError(GraftVQAError):
    """A planner could not produce a program (LLM down, unparseable reply, question not understood)."""


class QuestionNotUnderstoodError(PlannerError):
    """The rule planner cannot parse the question; it never guesses."""


class ProgramError(GraftVQAError):
    """A generated program is invalid or failed; the message quotes the failing line."""


class SandboxError(GraftVQAError):
    """The sandbox itself failed (not the program inside it)."""


# --- data sets ---------------------------------------------------------------------------------
class DatasetNotFoundError(GraftVQAError, FileNotFoundError):
    """A benchmark or training data set is missing or partial; the message says what to pass."""


# --- running on a cluster ----------------------------------------------------------------------
class DistributedError(GraftVQAError):
    """Work could not run on a Ray cluster (extra not installed, no cluster at the address, every
    worker lost, workers that disagree with this process); the message says what to do."""


# --- search indexes ----------------------------------------------------------------------------
class SearchIndexError(GraftVQAError):
    """A search index cannot be used: missing, not an index, or built in another embedding space."""


class IndexNotFoundError(SearchIndexError, FileNotFoundError):
    """No search index at the given folder; the message says how to build one."""


class EmbedderMismatchError(SearchIndexError):
    """The index was built with other weights than the query's embedder; the message names both."""
