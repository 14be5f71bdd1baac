//! The inline PTX the CUDA emulator executes: each instruction's exact opcode, its operands
//! (register class, vector width, address or not) and the `rlemu_ptx` function of
//! kernels/emu/rlemu.h that implements it. emulator.rs matches every `asm` statement against
//! this table.

/// A register class of an inline-asm operand: the constraint letter and the C type it binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// "r": a 32-bit integer register (`unsigned`).
    B32,
    /// "f": an f32 register.
    F32,
    /// "l": a 64-bit integer register (a global pointer).
    B64,
    /// "n": an immediate (a compile-time integer constant).
    Imm,
}

impl Reg {
    pub(super) fn letter(self) -> char {
        match self {
            Reg::B32 => 'r',
            Reg::F32 => 'f',
            Reg::B64 => 'l',
            Reg::Imm => 'n',
        }
    }
}

/// One operand of an emulated PTX instruction: written or read, how many registers (a vector
/// `{%a, %b, ...}` when more than one), and whether it is an address (`[%a]`).
#[derive(Clone, Copy, Debug)]
pub struct PtxOperand {
    pub written: bool,
    pub regs: usize,
    pub class: Reg,
    pub address: bool,
}

/// A PTX instruction the emulator executes: its exact opcode with modifiers, its operands, and
/// the `rlemu_ptx` function (kernels/emu/rlemu.h) that implements it. The function takes the
/// source location, then a pointer per written register, then the value of each read register.
pub struct PtxForm {
    pub opcode: &'static str,
    pub operands: &'static [PtxOperand],
    pub function: &'static str,
}

const fn out(regs: usize, class: Reg) -> PtxOperand {
    PtxOperand {
        written: true,
        regs,
        class,
        address: false,
    }
}

const fn inp(regs: usize, class: Reg) -> PtxOperand {
    PtxOperand {
        written: false,
        regs,
        class,
        address: false,
    }
}

/// An address operand: a shared-window address in a 32-bit register (from
/// `__cvta_generic_to_shared`) or a global pointer in a 64-bit one.
const fn addr(class: Reg) -> PtxOperand {
    PtxOperand {
        written: false,
        regs: 1,
        class,
        address: true,
    }
}

const SHARED: PtxOperand = addr(Reg::B32);
const GLOBAL: PtxOperand = addr(Reg::B64);
const IMM: PtxOperand = inp(1, Reg::Imm);
const B32: PtxOperand = inp(1, Reg::B32);

/// The inline PTX the emulator knows. Anything else in a kernel is a build error.
pub const PTX_FORMS: &[PtxForm] = &[
    PtxForm {
        opcode: "cvt.rna.tf32.f32",
        operands: &[out(1, Reg::B32), inp(1, Reg::F32)],
        function: "rlemu_ptx::cvt_rna_tf32_f32",
    },
    PtxForm {
        opcode: "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32",
        operands: &[
            out(4, Reg::F32),
            inp(4, Reg::B32),
            inp(2, Reg::B32),
            inp(4, Reg::F32),
        ],
        function: "rlemu_ptx::mma_m16n8k8_row_col_f32_tf32_tf32_f32",
    },
    PtxForm {
        opcode: "cvt.rn.bf16x2.f32",
        operands: &[out(1, Reg::B32), inp(1, Reg::F32), inp(1, Reg::F32)],
        function: "rlemu_ptx::cvt_rn_bf16x2_f32",
    },
    PtxForm {
        opcode: "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
        operands: &[
            out(4, Reg::F32),
            inp(4, Reg::B32),
            inp(2, Reg::B32),
            inp(4, Reg::F32),
        ],
        function: "rlemu_ptx::mma_m16n8k16_row_col_f32_bf16_bf16_f32",
    },
    PtxForm {
        opcode: "ldmatrix.sync.aligned.m8n8.x1.shared.b16",
        operands: &[out(1, Reg::B32), SHARED],
        function: "rlemu_ptx::ldmatrix_x1",
    },
    PtxForm {
        opcode: "ldmatrix.sync.aligned.m8n8.x2.shared.b16",
        operands: &[out(2, Reg::B32), SHARED],
        function: "rlemu_ptx::ldmatrix_x2",
    },
    PtxForm {
        opcode: "ldmatrix.sync.aligned.m8n8.x4.shared.b16",
        operands: &[out(4, Reg::B32), SHARED],
        function: "rlemu_ptx::ldmatrix_x4",
    },
    PtxForm {
        opcode: "ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16",
        operands: &[out(1, Reg::B32), SHARED],
        function: "rlemu_ptx::ldmatrix_x1_trans",
    },
    PtxForm {
        opcode: "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16",
        operands: &[out(2, Reg::B32), SHARED],
        function: "rlemu_ptx::ldmatrix_x2_trans",
    },
    PtxForm {
        opcode: "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16",
        operands: &[out(4, Reg::B32), SHARED],
        function: "rlemu_ptx::ldmatrix_x4_trans",
    },
    PtxForm {
        opcode: "cp.async.ca.shared.global",
        operands: &[SHARED, GLOBAL, IMM],
        function: "rlemu_ptx::cp_async_ca",
    },
    PtxForm {
        opcode: "cp.async.ca.shared.global",
        operands: &[SHARED, GLOBAL, IMM, B32],
        function: "rlemu_ptx::cp_async_ca_zfill",
    },
    PtxForm {
        opcode: "cp.async.cg.shared.global",
        operands: &[SHARED, GLOBAL, IMM],
        function: "rlemu_ptx::cp_async_cg",
    },
    PtxForm {
        opcode: "cp.async.cg.shared.global",
        operands: &[SHARED, GLOBAL, IMM, B32],
        function: "rlemu_ptx::cp_async_cg_zfill",
    },
    PtxForm {
        opcode: "cp.async.commit_group",
        operands: &[],
        function: "rlemu_ptx::cp_async_commit_group",
    },
    PtxForm {
        opcode: "cp.async.wait_group",
        operands: &[IMM],
        function: "rlemu_ptx::cp_async_wait_group",
    },
    PtxForm {
        opcode: "cp.async.wait_all",
        operands: &[],
        function: "rlemu_ptx::cp_async_wait_all",
    },
];
