"""Extended AT command handlers of the simulated modem (``+CMGR``, ``+CPMS``, ``+CNUM``…).

Each handler gets the modem state, the command form (EXEC/READ/TEST/SET) and the
parsed arguments, and returns the information lines of its response, or raises
:class:`~muxd_sim.modem_at.CmeError` / :class:`~muxd_sim.modem_at.CmsError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from muxd_sim.modem_at import EXEC, READ, SET, TEST, CmeError, CmsError, int_arg
from muxd_sim.modem_ident import MCC_MNC, iccid_ef_hex

if TYPE_CHECKING:
    from muxd_sim.modem_state import SimModemState

__all__ = ["HANDLERS", "SMSC_NUMBER", "STAT_ALL", "STAT_READ", "STAT_UNREAD", "STORAGE", "Handler"]

STAT_UNREAD = 0
STAT_READ = 1
STAT_ALL = 4
STORAGE = "SM"
SMSC_NUMBER = "+79168999100"  # MTS Moscow SMSC
EF_ICCID = 12258  # 0x2FE2
CRSM_READ_BINARY = 176
OPERATOR_NAMES = {MCC_MNC: ("MTS RUS", "MTS")}
ACT_EUTRAN = 7
LAC = "1B2C"
CELL_ID = "0A3F51"

Handler = Callable[["SimModemState", str, list[str]], list[str]]


def _sms_index(state: SimModemState, args: list[str]) -> int:
    try:
        return int_arg(args, 0, state.index_base, state.index_base + state.capacity - 1)
    except CmeError:
        raise CmsError(321) from None


def _require_pdu_mode(state: SimModemState) -> None:
    if state.cmgf != 0:
        raise CmsError(302)


def _cmee(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == SET:
        state.cmee = int_arg(args, 0, 0, 2, default=0)
        return []
    if form == READ:
        return [f"+CMEE: {state.cmee}"]
    if form == TEST:
        return ["+CMEE: (0-2)"]
    raise CmeError(50)


def _cmgf(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == SET:
        state.cmgf = int_arg(args, 0, 0, 1, default=0)
        return []
    if form == READ:
        return [f"+CMGF: {state.cmgf}"]
    if form == TEST:
        return ["+CMGF: (0,1)"]
    raise CmeError(50)


def _cpms_counts(state: SimModemState) -> str:
    return ",".join(f"{state.used_in(mem)},{state.capacity}" for mem in state.cpms)


def _cpms(state: SimModemState, form: str, args: list[str]) -> list[str]:
    """``+CPMS``: the memories the flavour offers (``MT`` is served by ``ME``'s slots)."""
    offered = state.flavour.storages
    if form == SET:
        if not 1 <= len(args) <= 3:
            raise CmsError(302)
        mems = [arg.upper() for arg in args]
        if any(mem not in offered for mem in mems):
            raise CmsError(302)
        state.cpms[: len(mems)] = mems
        return [f"+CPMS: {_cpms_counts(state)}"]
    if form == READ:
        parts = [f'"{mem}",{state.used_in(mem)},{state.capacity}' for mem in state.cpms]
        return ["+CPMS: " + ",".join(parts)]
    if form == TEST:
        listed = "(" + ",".join(f'"{mem}"' for mem in offered) + ")"
        return [f"+CPMS: {listed},{listed},{listed}"]
    raise CmsError(302)


def _cnmi(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == SET:
        if len(args) > 5:
            raise CmeError(50)
        limits = ((0, 3), (0, 3), (0, 3), (0, 2), (0, 1))
        values = [
            int_arg(args, pos, low, high, default=state.cnmi[pos])
            for pos, (low, high) in enumerate(limits)
        ]
        state.cnmi = (values[0], values[1], values[2], values[3], values[4])
        return []
    if form == READ:
        return ["+CNMI: " + ",".join(str(v) for v in state.cnmi)]
    if form == TEST:
        return ["+CNMI: (0-3),(0-3),(0,2),(0-2),(0,1)"]
    raise CmeError(50)


def _cgsn(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == EXEC:
        return [state.imei]
    if form == TEST:
        return []
    raise CmeError(50)


def _cimi(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == EXEC:
        return [state.imsi]
    if form == TEST:
        return []
    raise CmeError(50)


def _ccid(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form in (EXEC, READ):
        return [f"+CCID: {state.iccid}"]
    if form == TEST:
        return []
    raise CmeError(50)


def _crsm(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == TEST:
        return []
    if form != SET:
        raise CmeError(50)
    command = int_arg(args, 0, 0, 255)
    file_id = int_arg(args, 1, 0, 0xFFFF, default=0)
    p3 = int_arg(args, 4, 0, 255, default=0)
    if command != CRSM_READ_BINARY or file_id != EF_ICCID:
        return ["+CRSM: 106,130"]  # SW 6A82: file not found
    content = iccid_ef_hex(state.iccid)
    size = len(content) // 2
    if p3 > size:
        return [f"+CRSM: 108,{size}"]  # SW 6Cxx: wrong Le, xx is the right one
    length = p3 or size
    return [f'+CRSM: 144,0,"{content[: 2 * length]}"']


def _cnum(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == EXEC:
        if state.number is None or state.faults.cnum_empty:
            return []
        toa = 145 if state.number.startswith("+") else 129
        return [f'+CNUM: "","{state.number}",{toa}']
    if form == TEST:
        return []
    raise CmeError(50)


def _csq(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == EXEC:
        return [f"+CSQ: {state.rssi},99"]
    if form == TEST:
        return ["+CSQ: (0-31,99),(0-7,99)"]
    raise CmeError(50)


def _registration(state: SimModemState, name: str, form: str, args: list[str]) -> list[str]:
    """``+CREG`` / ``+CGREG`` / ``+CEREG``: the report mode ``n`` is kept per command."""
    if form == SET:
        state.reg_report[name] = int_arg(args, 0, 0, 2, default=0)
        return []
    if form == READ:
        n = state.reg_report.get(name, 0)
        extra = f',"{LAC}","{CELL_ID}",{ACT_EUTRAN}' if n == 2 and state.registered else ""
        return [f"{name}: {n},{state.reg_stat}{extra}"]
    if form == TEST:
        return [f"{name}: (0-2)"]
    raise CmeError(50)


def _creg(state: SimModemState, form: str, args: list[str]) -> list[str]:
    return _registration(state, "+CREG", form, args)


def _cgreg(state: SimModemState, form: str, args: list[str]) -> list[str]:
    return _registration(state, "+CGREG", form, args)


def _cereg(state: SimModemState, form: str, args: list[str]) -> list[str]:
    return _registration(state, "+CEREG", form, args)


def _cops(state: SimModemState, form: str, args: list[str]) -> list[str]:
    operator = state.imsi[:5]
    long_name, short_name = OPERATOR_NAMES.get(operator, (operator, operator))
    if form == READ:
        if not state.registered:
            return ["+COPS: 0"]
        name = (long_name, short_name, operator)[state.cops_format]
        return [f'+COPS: 0,{state.cops_format},"{name}",{ACT_EUTRAN}']
    if form == SET:
        mode = int_arg(args, 0, 0, 4)
        if mode == 3:
            state.cops_format = int_arg(args, 1, 0, 2)
        elif mode != 0:
            raise CmeError(3)
        return []
    if form == TEST:
        return [f'+COPS: (2,"{long_name}","{short_name}","{operator}",{ACT_EUTRAN}),,(0-4),(0-2)']
    raise CmeError(50)


def _ident(value: str, form: str) -> list[str]:
    if form == EXEC:
        return [value]
    if form == TEST:
        return []
    raise CmeError(50)


def _cgmi(state: SimModemState, form: str, args: list[str]) -> list[str]:
    return _ident(state.manufacturer, form)


def _cgmm(state: SimModemState, form: str, args: list[str]) -> list[str]:
    return _ident(state.model, form)


def _cgmr(state: SimModemState, form: str, args: list[str]) -> list[str]:
    return _ident(f"Revision: {state.revision}", form)


def _cpin(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == READ:
        if not state.sim_present:
            raise CmeError(10)
        return ["+CPIN: READY"]
    if form == TEST:
        return []
    raise CmeError(3)


def _cfun(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == SET:
        state.cfun = int_arg(args, 0, 0, 4)
        reset = int_arg(args, 1, 0, 1, default=0)
        if reset and state.cfun == 1 and state.flavour.cfun_reset:
            state.request_reboot()
        return []
    if form == READ:
        return [f"+CFUN: {state.cfun}"]
    if form == TEST:
        return ["+CFUN: (0,1,4),(0,1)"]
    raise CmeError(50)


def _cscs(state: SimModemState, form: str, args: list[str]) -> list[str]:
    charsets = ("GSM", "IRA", "UCS2")
    if form == SET:
        charset = args[0].upper() if args else ""
        if charset not in charsets:
            raise CmeError(50)
        state.cscs = charset
        return []
    if form == READ:
        return [f'+CSCS: "{state.cscs}"']
    if form == TEST:
        return ["+CSCS: (" + ",".join(f'"{c}"' for c in charsets) + ")"]
    raise CmeError(50)


def _csca(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == READ:
        return [f'+CSCA: "{SMSC_NUMBER}",145']
    if form in (SET, TEST):
        return []
    raise CmeError(50)


def _csms(state: SimModemState, form: str, args: list[str]) -> list[str]:
    """``+CSMS``: service 1 makes routed SMS wait for ``AT+CNMA`` (refused: routed_nocsms)."""
    if form == SET:
        try:
            service = int_arg(args, 0, 0, 1)
        except CmeError:
            raise CmsError(302) from None
        if service == 1 and state.faults.routed_nocsms > 0:
            raise CmsError(303)
        state.csms = service
        return ["+CSMS: 1,1,1"]
    if form == READ:
        return [f"+CSMS: {state.csms},1,1,1"]
    if form == TEST:
        return ["+CSMS: (0)" if state.faults.routed_nocsms > 0 else "+CSMS: (0,1)"]
    raise CmeError(50)


def _cnma(state: SimModemState, form: str, args: list[str]) -> list[str]:
    """``+CNMA``: acknowledge (``AT+CNMA``, ``=0``, ``=1``) or refuse (``=2``) a routed SMS."""
    if form == TEST:
        return ["+CNMA: (0-2)"]
    if form == READ:
        raise CmsError(302)
    _require_pdu_mode(state)
    try:
        reply = int_arg(args, 0, 0, 2, default=0)
    except CmeError:
        raise CmsError(304) from None
    if state.csms != 1 or not state.awaiting_cnma:
        raise CmsError(340)  # no +CNMA acknowledgement expected
    state.awaiting_cnma = False
    if state.on_cnma is not None:
        state.on_cnma(reply != 2)
    return []


def _cmgr(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == TEST:
        return []
    if form != SET:
        raise CmsError(302)
    _require_pdu_mode(state)
    index = _sms_index(state, args)
    slot = state.slots.get(index)
    if slot is None:
        raise CmsError(321)
    if slot.stat == STAT_UNREAD:
        state.slots[index] = slot._replace(stat=STAT_READ)
    return [f"+CMGR: {slot.stat},,{slot.tpdu_length}", slot.pdu_hex]


def _cmgl(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == TEST:
        return ["+CMGL: (0-4)"]
    if form not in (EXEC, SET):
        raise CmsError(302)
    _require_pdu_mode(state)
    try:
        wanted = int_arg(args, 0, 0, STAT_ALL, default=STAT_UNREAD)
    except CmeError:
        raise CmsError(304) from None
    lines: list[str] = []
    for index in sorted(state.slots):
        slot = state.slots[index]
        if wanted != STAT_ALL and slot.stat != wanted:
            continue
        lines += [f"+CMGL: {index},{slot.stat},,{slot.tpdu_length}", slot.pdu_hex]
        if slot.stat == STAT_UNREAD:
            state.slots[index] = slot._replace(stat=STAT_READ)
    return lines


def _cmgd(state: SimModemState, form: str, args: list[str]) -> list[str]:
    if form == TEST:
        used = ",".join(str(index) for index in sorted(state.slots))
        return [f"+CMGD: ({used}),(0-4)"]
    if form != SET:
        raise CmsError(302)
    index = _sms_index(state, args)
    try:
        flag = int_arg(args, 1, 0, 4, default=0)
    except CmeError:
        raise CmsError(304) from None
    if flag == 0:
        if index in state.slots:
            state.delete(index)
        return []
    kept = {1: (0, 2, 3), 2: (0, 2), 3: (0,), 4: ()}[flag]  # stats that survive
    for stored in sorted(state.slots):
        if state.slots[stored].stat not in kept:
            state.delete(stored)
    return []


HANDLERS: dict[str, Handler] = {
    "+CMEE": _cmee,
    "+CMGF": _cmgf,
    "+CPMS": _cpms,
    "+CNMI": _cnmi,
    "+CGSN": _cgsn,
    "+GSN": _cgsn,
    "+CIMI": _cimi,
    "+CCID": _ccid,
    "+CRSM": _crsm,
    "+CNUM": _cnum,
    "+CSQ": _csq,
    "+CREG": _creg,
    "+CGREG": _cgreg,
    "+CEREG": _cereg,
    "+COPS": _cops,
    "+CGMI": _cgmi,
    "+GMI": _cgmi,
    "+CGMM": _cgmm,
    "+GMM": _cgmm,
    "+CGMR": _cgmr,
    "+GMR": _cgmr,
    "+CPIN": _cpin,
    "+CFUN": _cfun,
    "+CSCS": _cscs,
    "+CSCA": _csca,
    "+CSMS": _csms,
    "+CNMA": _cnma,
    "+CMGR": _cmgr,
    "+CMGL": _cmgl,
    "+CMGD": _cmgd,
}
