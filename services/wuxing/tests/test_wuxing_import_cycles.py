"""wuxing's modules import each other as a hierarchy: ``cache`` seeds a missing version
key from ``revisions``, never from ``store`` (which imports ``cache``)."""

from butterfly_common.testing.imports import import_cycles, import_graph


def test_wuxing_has_no_import_cycle():
    assert import_cycles("butterfly_wuxing") == []


def test_cache_and_store_share_revisions_instead_of_importing_each_other():
    graph = import_graph("butterfly_wuxing")
    assert "butterfly_wuxing.cache" in graph["butterfly_wuxing.store"]
    assert "butterfly_wuxing.store" not in graph["butterfly_wuxing.cache"]
    assert "butterfly_wuxing.revisions" in graph["butterfly_wuxing.cache"]
