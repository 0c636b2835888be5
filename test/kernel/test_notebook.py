"""nbclient executes a TypeScript notebook on the tunelab kernel; every output lands in its own cell."""
from pathlib import Path

from jupyter_env import install_private_kernelspec

install_private_kernelspec()

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "basics.ipynb"


def execute() -> nbformat.NotebookNode:
    nb = nbformat.read(FIXTURE, as_version=4)
    NotebookClient(nb, kernel_name="tunelab", timeout=180, startup_timeout=120, allow_errors=True).execute()
    return nb


def test_every_output_lands_in_its_cell() -> None:
    nb = execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4, 5]

    sums = code[0].outputs
    assert [(o.output_type, o.get("name")) for o in sums] == [("stream", "stdout")]
    assert sums[0].text == "sum 6\n"

    magic = code[1].outputs
    assert [o.output_type for o in magic] == ["execute_result"]
    assert "%lsmagic" in magic[0].data["text/plain"]

    updated = code[2].outputs
    assert [o.output_type for o in updated] == ["display_data", "execute_result"]
    assert updated[0].data["text/plain"] == "'step 3 of 3'"  # the display was updated in place
    assert updated[1].data["text/plain"] == "'counted'"

    failed = code[3].outputs
    assert [o.output_type for o in failed] == ["error"]
    assert (failed[0].ename, failed[0].evalue) == ("Error", "intentional")

    after = code[4].outputs
    assert [o.output_type for o in after] == ["execute_result"]
    assert after[0].data["text/plain"] == "6"
