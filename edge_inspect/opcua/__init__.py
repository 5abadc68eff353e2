"""OPC UA server after OPC 40100-1 (Machine Vision): docs/opcua.md."""

try:
    import asyncua  # noqa: F401  (an install_requires of edge-inspect; an old environment may lack it)
except ImportError:  # the daemon says so in one line (cli: StartError), not with a traceback
    from ..plc.settings import StartError

    raise StartError(
        "station.yaml has an opcua section, but asyncua is not installed: "
        "pip install 'asyncua==2.1.*' (or reinstall edge-inspect)"
    ) from None

from .server import OpcUaServer  # noqa: E402

__all__ = ["OpcUaServer"]
