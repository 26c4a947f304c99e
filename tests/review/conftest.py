"""Fixtures of the review tests (re-exported from the HR tests)."""

from tests.hr.conftest import root_pw_file  # noqa: F401 - pytest fixture
from tests.hr.test_ad_target import ad  # noqa: F401 - pytest fixture
from tests.hr.test_hr_e2e import hr  # noqa: F401 - pytest fixture
