"""The package builds offline with the standard library alone, with pyproject.toml's name and
version, its type marker and every module."""

import os
import re
import sys
import tempfile
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class PackagingTest(unittest.TestCase):
    def test_the_wheel_has_pyprojects_name_version_and_py_typed(self) -> None:
        sys.path.insert(0, ROOT)
        try:
            import build_backend
        finally:
            sys.path.remove(ROOT)
        with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
            pyproject = f.read()
        project = pyproject.split("[project]", 1)[1]
        name = re.search(r'^name = "([^"]+)"', project, re.M)
        version = re.search(r'^version = "([^"]+)"', project, re.M)
        assert name and version
        self.assertEqual((build_backend.NAME, build_backend.VERSION), (name.group(1), version.group(1)))
        with tempfile.TemporaryDirectory() as d:
            wheel = build_backend.build_wheel(d)
            self.assertEqual(wheel, f"flotilla-{version.group(1)}-py3-none-any.whl")
            names = zipfile.ZipFile(os.path.join(d, wheel)).namelist()
        for want in ("flotilla/py.typed", "flotilla/api/__init__.py", "flotilla/api/runs.py",
                     f"flotilla-{version.group(1)}.dist-info/RECORD"):
            self.assertIn(want, names)
        self.assertFalse([n for n in names if "__pycache__" in n])


if __name__ == "__main__":
    unittest.main()
