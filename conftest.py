"""pytest configuration shared by the unit tests and the notebook runs (nbval).

nbval compares stderr like any other output and has no switch to ignore it; progress bars and
library warnings write there, and their text depends on speed. Skip stderr in every notebook
(the approach nbval's maintainers suggest in nbval issue #88). stdout is still compared.
"""


def pytest_collectstart(collector):
    if hasattr(collector, "skip_compare"):
        collector.skip_compare += ("stderr",)
