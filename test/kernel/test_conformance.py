"""jupyter_kernel_test's conformance suite against the installed tunelab kernelspec."""
import unittest

from jupyter_env import install_private_kernelspec

install_private_kernelspec()

import jupyter_kernel_test as jkt  # noqa: E402  (after the data directory is set)

jkt.TIMEOUT = 120  # the first cell compiles TypeScript; the machine may be loaded


class TunelabKernelTests(jkt.KernelTests):
    kernel_name = "tunelab"
    language_name = "typescript"
    file_extension = ".ts"

    code_hello_world = 'console.log("hello, world")'
    code_stderr = 'console.error("something went wrong")'

    completion_samples = [
        {"text": "Math.ma", "matches": {"max"}},
        {"text": "%lsma", "matches": {"%lsmagic"}},
    ]
    complete_code_samples = ["1 + 1", "const a = 1;", "function f() {\n  return 1;\n}", "%lsmagic"]
    incomplete_code_samples = ["function f() {", "const xs = [1, 2,", "if (true) {\n  console.log(1);"]
    invalid_code_samples = ["const = 5;", "1 +* 2", "let 9x = 1;"]

    code_generate_error = 'throw new Error("boom")'
    code_execute_result = [
        {"code": "6 * 7", "result": "42"},
        {"code": '"tune" + "lab"', "result": "'tunelab'"},
        {"code": "[1, 2, 3].map((x) => x * 2)", "result": "[ 2, 4, 6 ]"},
    ]
    code_display_data = [
        {"code": 'display("shown")', "mime": "text/plain"},
        {"code": 'display({ [Symbol.for("Jupyter.display")]() { return { "text/html": "<b>rich</b>" }; } })', "mime": "text/html"},
    ]
    code_inspect_sample = "Math.max"
    code_clear_output = 'console.log("soon gone");\ntunelab.clear();'

    supported_history_operations = ("tail", "range", "search")
    code_history_pattern = "6 * ?"


if __name__ == "__main__":
    unittest.main()
