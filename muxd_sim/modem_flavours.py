"""Vendor flavours of the simulated modem: what differs between Quectel, SIMCom, Huawei, Telit.

A :class:`Flavour` is data (each quirk as seen on real modems): identity
strings, the URCs sent at power-up, after SIM (re)initialisation and when the SMS
subsystem is ready, memories and index base, and a table of vendor commands that
override or extend :data:`muxd_sim.modem_commands.HANDLERS`.

========  =====================  ==================================================
flavour   AT+CGMI / AT+CGMM       quirks
========  =====================  ==================================================
generic   Quectel / EC25          today's simulator: no URCs at boot, SM only, base 1
quectel   Quectel / EC25          RDY, +CPIN: READY, +QUSIM: 1, +QIND: SMS DONE/PB DONE;
                                  AT+QCCID (and AT+CCID); SM/ME/MT, default ME;
                                  AT+CFUN=1,1 reboots; +QIND: "smsfull","ME"
simcom    SIMCOM_Ltd /            RDY, +CPIN: READY, then SMS DONE, PB DONE after the
          SIMCOM_SIM7600E         boot delay (0.2 s; SMS commands before: +CMS ERROR: 500);
                                  AT+CCID answers a bare ICCID line, AT+CICCID +ICCID:;
                                  AT+CRESET / AT+CFUN=1,1 reboot; +CIEV: "SMSFULL",1
sim800    SIMCOM_Ltd /            as simcom, 2G: RDY, +CFUN: 1, +CPIN: READY, then
          SIMCOM_SIM800L          Call Ready, SMS Ready
huawei    huawei / E173           ^RSSI/^BOOT/^MODE/^DSFLOWRPT every urc_interval until
                                  AT^CURC=0 (which silences every ^ URC, ^SIMST and
                                  ^SMMEMFULL too); +CMTI only after AT^PORTSEL=1; index
                                  base 0; AT^ICCID? (plain digits); no AT+CCID; unknown
                                  commands: COMMAND NOT SUPPORT; blank lines around
                                  every response; SIM swap ^SIMST:255 / ^SIMST:1
telit     Telit / LE910           AT#CCID; no AT+CCID; AT+CNMI with <ds> != 0 ->
                                  +CMS ERROR: 303; AT#QSS=1 enables #QSS: 0 / #QSS: 1
                                  on SIM removal/insertion; AT#REBOOT
========  =====================  ==================================================

``^ICCID`` on real Huawei firmware is sometimes nibble-swapped like EF_ICCID; this
simulator answers the plain digits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from muxd_sim.modem_at import EXEC, READ, SET, TEST, CmeError, CmsError, int_arg
from muxd_sim.modem_commands import HANDLERS, Handler

if TYPE_CHECKING:
    from muxd_sim.modem_state import SimModemState

__all__ = [
    "FLAVOURS",
    "GENERIC",
    "SMS_COMMANDS",
    "Flavour",
    "get_flavour",
    "parse_flavours",
]

#: commands refused while the SMS subsystem boots (and with no SIM)
SMS_COMMANDS = frozenset(
    {"+CMGF", "+CPMS", "+CNMI", "+CMGR", "+CMGL", "+CMGD", "+CSMS", "+CSCA", "+CNMA", "+CMGS"}
)
#: commands that need the SIM (+CME ERROR: 10 without one)
SIM_COMMANDS = frozenset(
    {"+CIMI", "+CCID", "+QCCID", "+CICCID", "^ICCID", "#CCID", "+CNUM", "+CRSM"}
)


@dataclass(frozen=True, slots=True)
class Flavour:
    """One vendor's behaviour (see the module table). URC texts are single lines.

    ``idle_urc`` and ``periodic_urcs`` may use ``{rssi}``; ``smsfull_urc`` ``{mem}``.
    """

    name: str
    manufacturer: str
    model: str
    revision: str
    index_base: int = 1
    storages: tuple[str, ...] = ("SM",)  # +CPMS memories; "MT" is served by ME's slots
    default_storage: str = "SM"
    boot_urcs: tuple[str, ...] = ()  # at power-up / reboot
    ready_urcs: tuple[str, ...] = ()  # when SMS works: boot_delay after boot or SIM insertion
    boot_delay: float = 0.0  # seconds until ready_urcs; SMS commands refused until then
    boot_sms_error: int = 500  # +CMS ERROR code for SMS commands before ready
    sim_removed_urcs: tuple[str, ...] = ("+CPIN: NOT READY",)
    sim_inserted_urcs: tuple[str, ...] = ("+CPIN: READY",)
    smsfull_urc: str | None = None
    idle_urc: str = "+CREG: 1"  # what urc_mid_response injects when no message is stored
    periodic_urcs: tuple[str, ...] = ()
    urc_interval: float = 0.0  # seconds between periodic_urcs, 0 = none
    curc: bool = False  # AT^CURC exists; ^CURC=0 silences every "^" URC
    cmti_needs_portsel: bool = False  # +CMTI only after AT^PORTSEL=1
    qss: bool = False  # AT#QSS gates "#QSS:" URCs
    blank_lines: bool = False  # an extra CRLF before and after every response
    unknown_reply: str | None = None  # final result for unknown commands (None: ERROR/+CME)
    cfun_reset: bool = False  # AT+CFUN=1,1 reboots the module
    handlers: Mapping[str, Handler] = field(
        default_factory=lambda: MappingProxyType({}), compare=False
    )
    unsupported: frozenset[str] = frozenset()  # generic commands this modem lacks

    def handler(self, name: str) -> Handler | None:
        """The handler of extended command ``name`` on this modem, None if unknown."""
        own = self.handlers.get(name)
        if own is not None:
            return own
        if name in self.unsupported:
            return None
        return HANDLERS.get(name)


# ---------------------------------------------------------------- vendor commands


def _ident_line(line: str, form: str) -> list[str]:
    if form in (EXEC, READ):
        return [line]
    if form == TEST:
        return []
    raise CmeError(50)


def _accept(state: SimModemState, form: str, args: list[str]) -> list[str]:
    """A setting the simulation accepts without effect (AT+QSCLK=0, AT+QINDCFG=...)."""
    return []


def _qccid(state: SimModemState, form: str, args: list[str]) -> list[str]:
    return _ident_line(f"+QCCID: {state.iccid}", form)


def _qurccfg(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == READ:
        return ['+QURCCFG: "urcport","usbat"']
    return []


def _bare_ccid(state: SimModemState, form: str, args: list[str]) -> list[str]:
    return _ident_line(state.iccid, form)


def _ciccid(state: SimModemState, form: str, args: list[str]) -> list[str]:
    return _ident_line(f"+ICCID: {state.iccid}", form)


def _reboot(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == TEST:
        return []
    if form != EXEC:
        raise CmeError(50)
    state.request_reboot()
    return []


def _huawei_iccid(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == READ:
        return [f"^ICCID: {state.iccid}"]
    if form == TEST:
        return []
    raise CmeError(50)


def _curc(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == SET:
        state.curc = int_arg(args, 0, 0, 1) == 1
        return []
    if form == READ:
        return [f"^CURC: {int(state.curc)}"]
    if form == TEST:
        return ["^CURC: (0-1)"]
    raise CmeError(50)


def _portsel(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == SET:
        state.portsel = int_arg(args, 0, 0, 1)
        return []
    if form == READ:
        return [f"^PORTSEL: {state.portsel}"]
    if form == TEST:
        return ["^PORTSEL: (0-1)"]
    raise CmeError(50)


def _telit_ccid(state: SimModemState, form: str, args: list[str]) -> list[str]:
    return _ident_line(f"#CCID: {state.iccid}", form)


def _qss(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == SET:
        state.qss = int_arg(args, 0, 0, 2)
        return []
    if form == READ:
        return [f"#QSS: {state.qss},{int(state.sim_present)}"]
    if form == TEST:
        return ["#QSS: (0-2)"]
    raise CmeError(50)


def _telit_cnmi(state: SimModemState, form: str, args: list[str]) -> list[str]:
    """Telit refuses status-report routing (``<ds>`` != 0) with ``+CMS ERROR: 303``."""
    if form == SET and len(args) > 3 and args[3] not in ("", "0"):
        raise CmsError(303)
    return HANDLERS["+CNMI"](state, form, args)


def _table(handlers: dict[str, Handler]) -> Mapping[str, Handler]:
    return MappingProxyType(handlers)


# ---------------------------------------------------------------- the table

GENERIC = Flavour(
    "generic",
    manufacturer="Quectel",
    model="EC25",
    revision="EC25EFAR06A06M4G",
    sim_removed_urcs=("+CPIN: NOT READY",),
    sim_inserted_urcs=("+CPIN: READY",),
)

_ME = ("SM", "ME", "MT")

FLAVOURS: dict[str, Flavour] = {
    "generic": GENERIC,
    "quectel": Flavour(
        "quectel",
        manufacturer="Quectel",
        model="EC25",
        revision="EC25EFAR06A06M4G",
        storages=_ME,
        default_storage="ME",
        boot_urcs=("RDY", "+CPIN: READY", "+QUSIM: 1"),
        ready_urcs=("+QIND: SMS DONE", "+QIND: PB DONE"),
        boot_sms_error=314,
        sim_inserted_urcs=("+CPIN: READY", "+QUSIM: 1"),
        smsfull_urc='+QIND: "smsfull","{mem}"',
        cfun_reset=True,
        handlers=_table(
            {
                "+QCCID": _qccid,
                "+QURCCFG": _qurccfg,
                "+QINDCFG": _accept,
                "+QSCLK": _accept,
            }
        ),
    ),
    "simcom": Flavour(
        "simcom",
        manufacturer="SIMCOM_Ltd",
        model="SIMCOM_SIM7600E",
        revision="LE20B04SIM7600M22",
        storages=_ME,
        boot_urcs=("RDY", "+CPIN: READY"),
        ready_urcs=("SMS DONE", "PB DONE"),
        boot_delay=0.2,
        boot_sms_error=500,
        smsfull_urc='+CIEV: "SMSFULL",1',
        cfun_reset=True,
        handlers=_table({"+CCID": _bare_ccid, "+CICCID": _ciccid, "+CRESET": _reboot}),
    ),
    "sim800": Flavour(
        "sim800",
        manufacturer="SIMCOM_Ltd",
        model="SIMCOM_SIM800L",
        revision="1418B05SIM800L24",
        storages=_ME,
        boot_urcs=("RDY", "+CFUN: 1", "+CPIN: READY"),
        ready_urcs=("Call Ready", "SMS Ready"),
        boot_delay=0.2,
        boot_sms_error=500,
        smsfull_urc='+CIEV: "SMSFULL",1',
        cfun_reset=True,
        handlers=_table({"+CCID": _bare_ccid}),
    ),
    "huawei": Flavour(
        "huawei",
        manufacturer="huawei",
        model="E173",
        revision="11.126.85.00.209",
        index_base=0,
        storages=_ME,
        boot_urcs=("^SIMST:1",),
        sim_removed_urcs=("^SIMST:255",),
        sim_inserted_urcs=("^SIMST:1",),
        smsfull_urc='^SMMEMFULL:"{mem}"',
        idle_urc="^RSSI:{rssi}",
        periodic_urcs=(
            "^RSSI:{rssi}",
            "^BOOT:20358751,0,0,0,72",
            "^MODE:5,4",
            "^DSFLOWRPT:0000240E,00000000,00000000,00000000000AD023,00000000002FA192,"
            "0003E800,0003E800",
        ),
        urc_interval=1.0,
        curc=True,
        cmti_needs_portsel=True,
        blank_lines=True,
        unknown_reply="COMMAND NOT SUPPORT",
        handlers=_table(
            {
                "^ICCID": _huawei_iccid,
                "^CURC": _curc,
                "^PORTSEL": _portsel,
                "^RESET": _reboot,
            }
        ),
        unsupported=frozenset({"+CCID"}),
    ),
    "telit": Flavour(
        "telit",
        manufacturer="Telit",
        model="LE910",
        revision="20.00.403",
        storages=_ME,
        sim_removed_urcs=("#QSS: 0",),
        sim_inserted_urcs=("#QSS: 1",),
        qss=True,
        cfun_reset=True,
        handlers=_table(
            {"#CCID": _telit_ccid, "#QSS": _qss, "#REBOOT": _reboot, "+CNMI": _telit_cnmi}
        ),
        unsupported=frozenset({"+CCID"}),
    ),
}


def get_flavour(name: str) -> Flavour:
    """The flavour called ``name`` (case-insensitive); ValueError listing the known ones."""
    try:
        return FLAVOURS[name.strip().lower()]
    except KeyError:
        known = ", ".join(FLAVOURS)
        raise ValueError(f"unknown modem flavour {name!r} (known: {known})") from None


def parse_flavours(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"quectel,huawei"`` (or a list of names; ``"all"`` = every flavour) -> validated names."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        if name == "all":
            names.extend(FLAVOURS)
            continue
        names.append(get_flavour(name).name)
    if not names:
        raise ValueError("no modem flavour given")
    return tuple(names)
