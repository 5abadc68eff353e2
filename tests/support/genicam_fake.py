"""Aravis' GigE Vision fake camera on loopback, for the genicam tests (fixtures in tests/camera/conftest.py): it answers GVCP and streams
GVSP over UDP as a real GigE camera does. The tests skip, saying why, where PyGObject or Aravis
0.8 (gir1.2-aravis-0.8) is missing (the 3.10 / 3.12 jobs of .ci/run)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

SERIAL = "EI-FAKE-0001"
TRIGGER_SOFTWARE_REGISTER = 0x30C  # the fake's TriggerSoftwareCommandRegister (its genicam XML)


def aravis_or_skip() -> Any:
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as err:
        pytest.skip(f"PyGObject with Aravis 0.8 is needed (gir1.2-aravis-0.8 and PyGObject==3.50.2): {err}")
    return Aravis


class FakeCamera:
    """An ArvGvFakeCamera on 127.0.0.1 (one at a time: it binds the GVCP port 3956)."""

    def __init__(self, aravis: Any, genicam_xml: Path | None = None, lost_ratio: float = 0.0):
        """``lost_ratio``: the share of stream packets the fake drops (it does not resend them)."""
        self.aravis = aravis
        options: dict[str, Any] = {"interface_name": "lo", "serial_number": SERIAL, "gvsp_lost_ratio": lost_ratio}
        if genicam_xml is not None:
            options["genicam_filename"] = str(genicam_xml)
        self.gv = aravis.GvFakeCamera(**options)
        if not self.gv.is_running():
            pytest.skip("the Aravis fake camera cannot listen on 127.0.0.1:3956 (in use?)")
        self.fake = self.gv.get_fake_camera()
        self.fake.set_trigger_frequency(200.0)  # how often a triggered fake looks for a trigger

    def line_pulse(self) -> None:
        """A pulse on the camera's trigger line (only with line_trigger_xml): the appliance sends nothing."""
        self.fake.write_register(TRIGGER_SOFTWARE_REGISTER, 1)

    def set_user_id(self, name: str) -> None:
        """DeviceUserID (only with user_id_xml): the GigE bootstrap's user-defined name, 16 bytes at 0xe8."""
        raw = name.encode().ljust(16, b"\0")
        for i in range(0, 16, 4):  # registers are stored big-endian: these are the bytes in order
            self.fake.write_register(0xE8 + i, int.from_bytes(raw[i : i + 4], "big"))

    def stop(self) -> None:
        """Drop the fake (its finalizer stops its thread and closes its sockets); again is a no-op."""
        self.fake = None
        self.gv = None


def line_trigger_xml(aravis: Any, folder: Path) -> Path:
    """The fake's own genicam XML with TriggerSource's entries swapped: Line0 takes the register value
    of Software, so a camera set to TriggerSource Line0 waits for a trigger that the test, not the
    appliance, writes into the fake's memory: a line trigger as far as the appliance can tell (the
    fake camera of Aravis 0.8.26 streams nothing on Line0 otherwise)."""
    probe = aravis.FakeCamera.new("probe")
    xml = probe.get_genicam_xml()[0]
    del probe
    block = re.search(r'<Enumeration Name="TriggerSource".*?</Enumeration>', xml, re.S)
    assert block is not None
    swapped = (
        block.group(0)
        .replace('<EnumEntry Name="Line0" NameSpace="Standard">\n\t\t\t<Value>0</Value>', "@LINE@")
        .replace('<EnumEntry Name="Software" NameSpace="Standard">\n\t\t\t<Value>1</Value>', "@SOFT@")
        .replace("@LINE@", '<EnumEntry Name="Line0" NameSpace="Standard">\n\t\t\t<Value>1</Value>')
        .replace("@SOFT@", '<EnumEntry Name="Software" NameSpace="Standard">\n\t\t\t<Value>0</Value>')
    )
    assert swapped != block.group(0)
    path = folder / "fake-line-trigger.xml"
    path.write_text(xml.replace(block.group(0), swapped))
    return path


def user_id_xml(aravis: Any, folder: Path) -> Path:
    """The fake's genicam XML with a DeviceUserID node (its own XML has none) on the bootstrap
    registers' user-defined name."""
    probe = aravis.FakeCamera.new("probe")
    xml = probe.get_genicam_xml()[0]
    del probe
    node = (
        '\t<StringReg Name="DeviceUserID" NameSpace="Standard">\n\t\t<Address>0xe8</Address>\n'
        "\t\t<Length>16</Length>\n\t\t<AccessMode>RW</AccessMode>\n\t\t<pPort>Device</pPort>\n\t</StringReg>\n\n"
    )
    assert "\t<!-- Acquisition control -->" in xml
    path = folder / "fake-user-id.xml"
    path.write_text(xml.replace("\t<!-- Acquisition control -->", node + "\t<!-- Acquisition control -->"))
    return path
