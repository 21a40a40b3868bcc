"""An OS sandbox around each CLI run: bubblewrap namespaces, a model gateway that keeps the
real credential outside, an allow-list egress proxy, and per-run cgroup limits.

Pure Python like the rest of cli_exec: callers pass every setting in.
"""

from cli_exec.sandbox.cgroups import LimitSupport, ResourceLimits
from cli_exec.sandbox.cgroups import detect as detect_limits
from cli_exec.sandbox.gateway import DEFAULT_UPSTREAM, ModelCredential
from cli_exec.sandbox.probe import SandboxUnavailable, probe
from cli_exec.sandbox.run import RunSpec, SandboxConfig, SandboxRun, SandboxStartError

__all__ = [
    "DEFAULT_UPSTREAM",
    "LimitSupport",
    "ModelCredential",
    "ResourceLimits",
    "RunSpec",
    "SandboxConfig",
    "SandboxRun",
    "SandboxStartError",
    "SandboxUnavailable",
    "detect_limits",
    "probe",
]
