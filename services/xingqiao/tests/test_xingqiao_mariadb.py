"""The engine, API, version, map, signal, sub-flow, saga and trigger suites again, with xingqiao on
MariaDB (as in the fleet) instead of SQLite: the same test functions, collected here
against a MariaDB-backed fleet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_xingqiao_api import (  # noqa: F401 - collected again against MariaDB
    finished_job,
    test_create_job_errors,
    test_list_jobs_filters_paging_and_order,
    test_state_refusals,
)
from test_xingqiao_engine import (  # noqa: F401
    test_cancel_fences_the_running_task_and_stops_dispatch,
    test_hello_demo_finishes_fast_with_its_saved_result,
    test_retries_with_fixed_and_exponential_backoff,
    test_retry_job_reruns_from_failure_and_keeps_finished_results,
    test_task_timeout_then_retry_then_timed_out,
    test_trigger_rules,
)
from test_xingqiao_map import (  # noqa: F401
    test_failed_item_follows_trigger_rules_and_retry_reruns_only_it,
    test_map_in_a_plugin_flow_type,
    test_map_over_an_upstream_list_bounded_retried_and_collected_in_order,
    test_map_over_refusals_and_empty_lists,
)
from test_xingqiao_notices import test_duplicated_and_reordered_notices_change_nothing  # noqa: F401
from test_xingqiao_saga import (  # noqa: F401
    test_a_failed_flow_undoes_its_finished_steps_latest_first,
    test_a_failed_undo_is_recorded_and_the_next_still_runs,
    test_a_flow_that_succeeds_compensates_nothing,
    test_saga_definition_refusals,
    test_saga_in_a_plugin_flow_type,
)
from test_xingqiao_signals import (  # noqa: F401
    test_approval_task_is_listed_until_a_person_decides,
    test_signal_in_a_plugin_flow_type,
    test_signal_refusals,
    test_signal_to_a_waiting_task_moves_the_flow_through_the_client,
    test_signals_sent_early_are_kept_and_taken_in_order,
    test_timeout_policies_fail_skip_default,
)
from test_xingqiao_subflows import (  # noqa: F401
    test_cancel_parent_cancels_the_running_child,
    test_failed_child_fails_the_task_and_retry_makes_a_new_child,
    test_parent_finishes_with_the_childs_saved_result_and_links_both_ways,
    test_subflow_in_a_plugin_flow_type,
    test_subflow_refusals_and_a_missing_type,
    test_timeout_becomes_the_childs_and_nesting_is_bounded,
)
from test_xingqiao_triggers import (  # noqa: F401
    test_a_redelivered_message_starts_one_flow,
    test_disabled_trigger_drops_events_and_enable_resumes,
    test_each_event_starts_one_flow_with_the_event_as_extra,
    test_the_same_event_published_at_once_starts_one_flow,
    test_trigger_refusals,
)
from test_xingqiao_versions import (  # noqa: F401
    test_json_flow_keeps_its_version_and_create_job_pins_one,
    test_plugin_flow_keeps_its_hash_across_a_reload,
)
from xq_helpers import XQ, fleet

from butterfly_common.testing import mariadb_database


@pytest.fixture(scope="module")
def xq() -> Iterator[XQ]:
    with mariadb_database("bf_xq") as url, fleet(BUTTERFLY_DB_URL=url) as client:
        yield client
