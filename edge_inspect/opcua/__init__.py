"""OPC UA server after OPC 40100-1 (Machine Vision): docs/opcua.md."""

from .server import OpcUaServer

__all__ = ["OpcUaServer"]
