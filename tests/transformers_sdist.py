"""transformers' own common test suites, taken from the pinned transformers sdist.

The sdist ships ``tests/test_modeling_common.py``, ``test_configuration_common.py``,
``test_processing_common.py`` and ``test_image_processing_common.py``. CI fetches it first (README's test
command)::

    .venv/bin/pip download --no-deps --no-binary :all: transformers==5.23.0 -d .ci/sdist

``MASKVL_TRANSFORMERS_SDIST`` may name another ``.tar.gz`` or folder holding it. :func:`import_common` extracts the
four files once into ``.ci/sdist/common/tf_tests/`` (a package, so their relative imports resolve) and adds a
one-line stub for each file they import that the sdist does not ship (all unused by a non-generative model).
"""

import importlib
import os
import sys
import tarfile
from pathlib import Path

VERSION = "5.23.0"
ROOT = Path(__file__).resolve().parent.parent
SDIST_DIR = ROOT / ".ci" / "sdist"
FETCH = (f".venv/bin/pip download --no-deps --no-binary :all: transformers=={VERSION} -d .ci/sdist")
COMMON_FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_processing_common.py",
                "test_image_processing_common.py")
# Imported by the common files but not shipped in the sdist.
STUBS = {
    "tf_tests/generation/test_utils.py": "class GenerationTesterMixin:  # stub: no generative model here\n    pass\n",
    "tf_tests/exporters/test_export.py": "class ExportTesterMixin:  # stub: export tests are not run\n    pass\n",
    "tf_tests/utils/test_configuration_utils.py": "config_common_kwargs = {}  # stub: only non-composite configs use it\n",
    "utils/fetch_hub_objects_for_ci.py": "def url_to_local_path(url, **kwargs):  # stub: nothing is fetched\n    return url\n",
}


def _archive() -> Path:
    given = os.environ.get("MASKVL_TRANSFORMERS_SDIST")
    candidates = [Path(given)] if given else []
    candidates.append(SDIST_DIR)
    for path in candidates:
        if path.is_dir():
            path = path / f"transformers-{VERSION}.tar.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"transformers {VERSION} sdist not found (looked at {', '.join(str(c) for c in candidates)}); "
        f"fetch it with: {FETCH}")


def extract(target: Path = SDIST_DIR / "common") -> Path:
    """Extract the common test files (once) and write the stubs; returns the folder to put on sys.path."""
    package = target / "tf_tests"
    if all((package / name).is_file() for name in COMMON_FILES):
        return target
    archive = _archive()
    package.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for name in COMMON_FILES:
            member = tar.getmember(f"transformers-{VERSION}/tests/{name}")
            (package / name).write_bytes(tar.extractfile(member).read())
    for relative, text in STUBS.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in (package, package / "generation", package / "exporters", package / "utils"):
        (folder / "__init__.py").touch()
    return target


def import_common(name: str):
    """``import_common("test_modeling_common")`` -> the module from the sdist."""
    folder = str(extract())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(f"tf_tests.{name}")
