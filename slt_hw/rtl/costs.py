"""Per-cell area and switching energy: the cited figures the synthesis report turns cell counts into.

Sources:
  [NG45] NanGate 45 nm Open Cell Library (FreePDK45), LEF `NangateOpenCellLibrary.macro.lef` as
         shipped in OpenROAD-flow-scripts flow/platforms/nangate45/lef: X1 cell footprints (SIZE
         width x 1.4 um row), e.g. NAND2_X1 0.57 x 1.4 = 0.798 um2, DFF_X1 3.23 x 1.4 = 4.522 um2.
  [NG45lib] NangateOpenCellLibrary_typical.lib: NAND2_X1 input capacitance A1 1.599 fF, A2 1.664 fF.
  [H14]  M. Horowitz, ISSCC 2014, 45 nm: 32-bit add 0.1 pJ, 32-bit multiply 3.1 pJ (the simulator's
         own source, sim/energy.py); used here only as a cross-check of the gate model.
  [D74]  R. Dennard et al., IEEE JSSC 1974, classical scaling: area ~ node^2.
"""

from __future__ import annotations

# Yosys internal gate -> (NanGate45 X1 cell, area um2) [NG45].
CELLS = {
    "$_NOT_": ("INV_X1", 0.532),
    "$_NAND_": ("NAND2_X1", 0.798),
    "$_NOR_": ("NOR2_X1", 0.798),
    "$_AND_": ("AND2_X1", 1.064),
    "$_OR_": ("OR2_X1", 1.064),
    "$_XOR_": ("XOR2_X1", 1.596),
    "$_XNOR_": ("XNOR2_X1", 1.596),
    "$_AOI3_": ("AOI21_X1", 1.064),
    "$_OAI3_": ("OAI21_X1", 1.064),
    "$_MUX_": ("MUX2_X1", 1.862),
    "$_DFF_P_": ("DFF_X1", 4.522),
}
FLOP = "$_DFF_P_"
ABC_GATES = "AND,NAND,OR,NOR,XOR,XNOR,MUX,AOI3,OAI3"  # each has an X1 cell above
NAND2_UM2 = CELLS["$_NAND_"][1]
BASE_NODE_NM = 45
NODES_NM = (45, 40, 28, 22)

# Gate energy model [NG45lib]: a node's switched capacitance is three NAND2 inputs (fanout two plus as
# much again for the driver's diffusion and local wire, an assumption); a cell's capacitance scales
# with its NAND2-equivalent area. E = alpha * C * V^2 per cycle at the simulator's 45 nm base supply.
C_IN_NAND2_FF = 1.6
C_NODE_FF = 3 * C_IN_NAND2_FF
VDD = 0.9
ALPHA_DATA = 0.25  # rising transitions per node per cycle on random data (the hash avalanches)
ALPHA_CLOCK = 1.0  # a flip-flop's clock input rises every cycle, data or not
FJ_PER_NAND2_TOGGLE = C_NODE_FF * VDD**2  # one rising transition of a NAND2-sized node

H14_ADD32_PJ, H14_MUL32_PJ = 0.1, 3.1


def area_scale(node_nm: float) -> float:
    """Classical area scaling from 45 nm [D74]: optimistic at 28/22 nm, where wires scale less."""
    return (node_nm / BASE_NODE_NM) ** 2


def nand2_eq(cells: dict[str, int]) -> float:
    return sum(n * CELLS[t][1] for t, n in cells.items()) / NAND2_UM2


def area_um2(cells: dict[str, int], node_nm: float = BASE_NODE_NM) -> float:
    return sum(n * CELLS[t][1] for t, n in cells.items()) * area_scale(node_nm)


def cycle_fj(cells: dict[str, int], data_rate: float = 1.0) -> float:
    """Energy of one clock cycle in fJ at 45 nm; `data_rate`: the fraction of cycles with new data."""
    logic = sum(n * CELLS[t][1] / NAND2_UM2 for t, n in cells.items()) * ALPHA_DATA * data_rate
    clock = cells.get(FLOP, 0) * ALPHA_CLOCK
    return (logic + clock) * FJ_PER_NAND2_TOGGLE
