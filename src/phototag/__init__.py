"""phototag: automatic multi-label image annotation for photo libraries and research."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("phototag")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from phototag.data import AnnotationSet, Vocabulary  # noqa: E402
from phototag.models import Annotator, available_annotators, create_annotator  # noqa: E402

__all__ = ["AnnotationSet", "Annotator", "Vocabulary", "available_annotators", "create_annotator"]
