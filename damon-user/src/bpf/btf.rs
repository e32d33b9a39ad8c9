//! Struct member offsets from the kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! The page-table walk needs `task_struct.{tgid,mm}` and `mm_struct.pgd`, which move between
//! kernel builds. aya 0.14 relocates CO-RE accesses only for C programs, so user space reads
//! the offsets itself and hands them to the programs as load-time constants.
use bytes::Buf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("BTF is truncated or malformed at byte {offset}")]
    Malformed { offset: usize },
    #[error("BTF has a bad magic {magic:#x}")]
    BadMagic { magic: u16 },
    #[error("BTF type kind {kind} is unknown to this parser")]
    UnknownKind { kind: u32 },
    #[error("type {name} is not in BTF")]
    NoStruct { name: String },
    #[error("{name}.{member} is not in BTF")]
    NoMember { name: String, member: String },
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

/// One type record: what member lookups need, the members themselves in `Btf::members`.
struct Type {
    name_off: u32,
    kind: u8,
    kind_flag: bool,
    /// Size of structs, unions and enums; the referenced type of modifiers and typedefs.
    size_or_type: u32,
    /// Members (struct, union) or values (enum) in `Btf::members`.
    first: u32,
    vlen: u32,
}

/// The parsed type section of a BTF blob: enough to resolve member offsets (including
/// members of anonymous nested structs and unions), struct sizes and enum values.
pub struct Btf {
    types: Vec<Type>,
    /// (name_off, type, offset) of struct/union members; (name_off, value, 0) of enum values.
    members: Vec<(u32, u32, u32)>,
    strings: Vec<u8>,
}

impl Btf {
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let mut hdr = data;
        if hdr.remaining() < 24 {
            return Err(BtfError::Malformed { offset: 0 });
        }
        let magic = hdr.get_u16_le();
        if magic != 0xeb9f {
            return Err(BtfError::BadMagic { magic });
        }
        hdr.advance(2); // version, flags
        let hdr_len = hdr.get_u32_le() as usize;
        let (type_off, type_len) = (hdr.get_u32_le() as usize, hdr.get_u32_le() as usize);
        let (str_off, str_len) = (hdr.get_u32_le() as usize, hdr.get_u32_le() as usize);
        let section = |off: usize, len: usize| {
            let start = hdr_len
                .checked_add(off)
                .ok_or(BtfError::Malformed { offset: off })?;
            data.get(start..start.saturating_add(len))
                .ok_or(BtfError::Malformed { offset: start })
        };
        let strings = section(str_off, str_len)?.to_vec();
        let mut buf = section(type_off, type_len)?;
        let void = Type {
            name_off: 0,
            kind: 0,
            kind_flag: false,
            size_or_type: 0,
            first: 0,
            vlen: 0,
        };
        let mut types = Vec::with_capacity(type_len / 24);
        types.push(void);
        let mut members = Vec::with_capacity(type_len / 16);
        while buf.has_remaining() {
            let at = type_len - buf.remaining();
            let need = |b: &&[u8], n: usize| {
                if b.remaining() < n {
                    Err(BtfError::Malformed { offset: at })
                } else {
                    Ok(())
                }
            };
            need(&buf, 12)?;
            let name_off = buf.get_u32_le();
            let info = buf.get_u32_le();
            let size_or_type = buf.get_u32_le();
            let kind = (info >> 24) & 0x1f;
            let vlen = info & 0xffff;
            let first = members.len() as u32;
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    need(&buf, 12 * vlen as usize)?;
                    for _ in 0..vlen {
                        members.push((buf.get_u32_le(), buf.get_u32_le(), buf.get_u32_le()));
                    }
                    0
                }
                KIND_ENUM => {
                    need(&buf, 8 * vlen as usize)?;
                    for _ in 0..vlen {
                        members.push((buf.get_u32_le(), buf.get_u32_le(), 0));
                    }
                    0
                }
                KIND_FUNC_PROTO => 8 * vlen as usize,
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen as usize,
                2 | 7..=12 | 16 | 18 => 0,
                kind => return Err(BtfError::UnknownKind { kind }),
            };
            need(&buf, extra)?;
            buf.advance(extra);
            types.push(Type {
                name_off,
                kind: kind as u8,
                kind_flag: info >> 31 == 1,
                size_or_type,
                first,
                vlen: members.len() as u32 - first,
            });
        }
        Ok(Self {
            types,
            members,
            strings,
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        &s[..end]
    }

    fn members_of(&self, t: &Type) -> &[(u32, u32, u32)] {
        let (a, b) = (t.first as usize, (t.first + t.vlen) as usize);
        self.members.get(a..b).unwrap_or_default()
    }

    /// Follows typedef / volatile / const / restrict / type_tag to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            if !matches!(t.kind as u32, 8..=11 | 18) {
                return Some(t);
            }
            id = t.size_or_type;
        }
        None
    }

    /// The definition (not a forward declaration) of the struct or enum `name`.
    fn named(&self, kinds: &[u32], name: &str) -> Option<&Type> {
        self.types.iter().find(|t| {
            kinds.contains(&(t.kind as u32))
                && t.vlen > 0
                && self.name(t.name_off) == name.as_bytes()
        })
    }

    fn find_member(&self, t: &Type, member: &str, depth: u32) -> Option<u32> {
        if depth > 8 {
            return None;
        }
        for &(name_off, ty, off) in self.members_of(t) {
            let bit_off = if t.kind_flag { off & 0xff_ffff } else { off };
            let name = self.name(name_off);
            if name == member.as_bytes() {
                return Some(bit_off / 8);
            }
            if name.is_empty() {
                let inner = self.resolve(ty)?;
                if let Some(o) = self.find_member(inner, member, depth + 1) {
                    return Some(bit_off / 8 + o);
                }
            }
        }
        None
    }

    fn structure(&self, name: &str) -> Result<&Type, BtfError> {
        self.named(&[KIND_STRUCT, KIND_UNION], name)
            .ok_or_else(|| BtfError::NoStruct { name: name.into() })
    }

    /// Byte offset of `member` in `struct name`.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u64, BtfError> {
        let t = self.structure(name)?;
        self.find_member(t, member, 0)
            .map(u64::from)
            .ok_or_else(|| BtfError::NoMember {
                name: name.into(),
                member: member.into(),
            })
    }

    /// `sizeof(struct name)`.
    pub fn struct_size(&self, name: &str) -> Result<u64, BtfError> {
        Ok(self.structure(name)?.size_or_type as u64)
    }

    /// The value of `variant` of `enum name`.
    pub fn enum_value(&self, name: &str, variant: &str) -> Result<u64, BtfError> {
        let t = self
            .named(&[KIND_ENUM], name)
            .ok_or_else(|| BtfError::NoStruct { name: name.into() })?;
        self.members_of(t)
            .iter()
            .find(|m| self.name(m.0) == variant.as_bytes())
            .map(|m| m.1 as u64)
            .ok_or_else(|| BtfError::NoMember {
                name: name.into(),
                member: variant.into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made BTF blob: `struct s { int a; union { int b; long c; }; }` with `c` at 8.
    fn blob() -> Vec<u8> {
        let strings = b"\0s\0a\0b\0c\0int\0long\0".to_vec();
        let mut types = Vec::new();
        let mut put = |v: &[u32]| {
            v.iter()
                .for_each(|x| types.extend_from_slice(&x.to_le_bytes()))
        };
        put(&[11, KIND_INT << 24, 4, 32]); // 1: int
        put(&[15, KIND_INT << 24, 8, 64]); // 2: long
        put(&[0, KIND_UNION << 24 | 2, 8, 5, 1, 0, 7, 2, 0]); // 3: union { b; c }
        put(&[1, KIND_STRUCT << 24 | 2, 16, 3, 1, 0, 0, 3, 64]); // 4: struct s { a @0; union @64 bits }
        let mut out = Vec::new();
        for v in [
            0xeb9fu16.to_le_bytes().to_vec(),
            vec![1, 0],
            24u32.to_le_bytes().to_vec(),
        ] {
            out.extend(v);
        }
        for v in [
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(v.to_le_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn offsets_of_direct_and_anonymous_members() {
        let btf = Btf::parse(&blob()).expect("parse");
        assert_eq!(btf.member_offset("s", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("s", "c").unwrap(), 8);
        assert!(matches!(
            btf.member_offset("s", "zz"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("t", "a"),
            Err(BtfError::NoStruct { .. })
        ));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let b = blob();
        for cut in [0, 10, 30, b.len() - 3] {
            assert!(Btf::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = b.clone();
        bad[0] = 0;
        assert!(matches!(Btf::parse(&bad), Err(BtfError::BadMagic { .. })));
    }

    #[test]
    fn kernel_btf_has_the_offsets_we_need() {
        // damon needs kernel BTF: a kernel without it fails here, as `damon check` would.
        let btf = Btf::from_sys_fs().expect("parse /sys/kernel/btf/vmlinux");
        for (s, m) in [
            ("task_struct", "tgid"),
            ("task_struct", "mm"),
            ("mm_struct", "pgd"),
        ] {
            let off = btf.member_offset(s, m).expect("offset");
            assert!(off > 0 && off < 0x10000, "{s}.{m} at {off}");
        }
    }
}
