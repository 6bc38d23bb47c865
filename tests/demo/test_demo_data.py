"""The main suite's data, text and privacy tests, collected again on the demo's outputs (``make demo``).

The same functions, with tests/demo/conftest.py's fixtures (``cohort_root`` = the demo's cohort,
``cohort_settings`` and ``run_config`` = config/config.yaml, ``test_run`` = the demo run), so their size-dependent
bounds (cohort bytes per patient, label prevalence, mini sizes, resolved references) hold at the demo's full size
(issue 28: these read the demo run's ``demo_root``/``demo_run`` before)."""

import pytest

from test_demo_cohort import (  # noqa: F401
    test_cohort_size_labels_and_languages,
    test_every_dicom_reads_back_with_geometry_of_ground_truth,
    test_headers_carry_the_planted_phi_and_ground_truth_lists_it,
    test_lesions_are_visible_at_their_planted_position,
    test_scouts_are_localizers,
)
from test_phi_and_env import test_no_phi_canary_in_results_or_logs_report_and_figures_included  # noqa: F401
from test_public_adapters import (  # noqa: F401
    test_ctrate_discover_rejects_known_broken_and_non_chest,
    test_ctrate_release_guard_refuses_mixing,
    test_ctrate_v1_volume_without_metadata_row_is_rejected,
    test_ctrate_v1_with_metadata_equals_v2,
    test_radchestct_axis_order_and_spacing,
)
from test_text import (  # noqa: F401
    test_every_planted_reference_is_resolved_or_rejected_as_planted,
    test_labels_match_the_demo_truth,
)
from test_public_minis import (  # noqa: F401
    test_ctrate_layout_and_tables,
    test_ctrate_v1_is_raw_with_blank_header_and_v2_is_hu,
    test_radchestct_layout,
)

pytestmark = pytest.mark.demo
