import { describe, expect, it } from "vitest";
import { describeExit } from "../../kernel/bridge/crash.js";

const FAULTHANDLER = `Fatal Python error: Illegal instruction

Thread 0x00007f (most recent call first):
  File "/x/mlx_lm/generate.py", line 412 in _step
  File "/x/tunelab_bridge/generation.py", line 50 in generate
`;

describe("why the bridge stopped", () => {
  it("names the BLAS and the setting that rules it out", () => {
    const stderr = `TUNELAB_FATAL signal=SIGILL library=/v/cmeel.prefix/lib/libopenblas.so.0 offset=0x1f00 symbol=sgemm_kernel\n${FAULTHANDLER}`;
    const text = describeExit(null, "SIGILL", stderr);
    expect(text).toMatch(/^the bridge hit an illegal instruction \(SIGILL\): native code built for instructions this CPU lacks, in its BLAS, \/v\/cmeel\.prefix\/lib\/libopenblas\.so\.0 \(sgemm_kernel\)/);
    expect(text).toMatch(/TUNELAB_BLAS=reference/);
  });

  it("names the host kernels and their path setting", () => {
    const text = describeExit(null, "SIGILL", "TUNELAB_FATAL signal=SIGILL library=/c/host-kernels/host-kernels-ab12.so offset=0x40\n");
    expect(text).toMatch(/in the host kernels of %tune's CPU step, \/c\/host-kernels\/host-kernels-ab12\.so;/);
    expect(text).toMatch(/TUNELAB_HOST_KERNELS_PATH=portable/);
  });

  it("falls back to where Python was when no library was named", () => {
    const text = describeExit(null, "SIGSEGV", FAULTHANDLER.replace("Illegal instruction", "Segmentation fault"));
    expect(text).toBe("the bridge hit a segmentation fault (SIGSEGV) in native code while Python ran _step (/x/mlx_lm/generate.py:412); run `tunelab doctor --recheck` to check its native libraries on this CPU");
  });

  it("reads a wrapper's exit status of 128 + the signal as that signal", () => {
    expect(describeExit(132, null, "TUNELAB_FATAL signal=SIGILL library=/usr/lib/libmlx.so offset=0x1\n")).toMatch(/illegal instruction.*in MLX's CPU backend, \/usr\/lib\/libmlx\.so/);
  });

  it("keeps plain exits and other signals as they were", () => {
    expect(describeExit(1, null, "Traceback ...")).toBe("the bridge process exited with code 1");
    expect(describeExit(null, "SIGKILL", "")).toBe("the bridge process was killed by SIGKILL");
  });
});
