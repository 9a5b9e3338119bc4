"""Stand-in for the get-pip.py that ansible-test downloads from ci-files.testing.ansible.com.

That host is unreachable from machines that only reach PyPI. ansible-test runs this file as
`python get_pip_<version>.py [pip options] pip==<version> ...` inside a fresh virtualenv without
pip; like get-pip.py, it must leave pip installed and then install the packages it was given. It
bootstraps the pip wheel bundled with CPython (ensurepip), then lets that pip install the rest from
PyPI. scripts/test puts it where ansible-test looks for its cached bootstrap script.
"""

import subprocess
import sys

subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
options = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *options]))
