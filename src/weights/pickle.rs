//! A pickle *parser* for the subset that `torch.save` state dicts use (protocol 2, plus the data-only
//! opcodes of protocols 3–5). Nothing is executed: the only globals recognised are
//! `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter` and
//! the `torch.*Storage` classes, and each is interpreted here. Any other global, and every opcode that
//! builds arbitrary objects (INST, OBJ, NEWOBJ, EXT*, …), is refused by name.
//!
//! Values are built in an arena so the memo shares containers as Python does (a dict is memoised empty
//! and filled afterwards), then copied out as a [`PickleValue`] tree under a size budget.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use super::{WeightDType, WeightError};

/// A parsed pickle value. Dicts keep their order (OrderedDict); tensors index [`Parsed::tensors`].
#[derive(Clone, Debug, PartialEq)]
pub enum PickleValue {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PickleValue>),
    Tuple(Vec<PickleValue>),
    Dict(Vec<(PickleValue, PickleValue)>),
    Tensor(usize),
}

impl PickleValue {
    /// The value under string key `key` of a dict.
    pub fn get(&self, key: &str) -> Option<&PickleValue> {
        match self {
            Self::Dict(items) => items.iter().find(|(k, _)| matches!(k, Self::Str(s) if s == key)).map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    /// Floats, and ints read as floats (configs write `1` for `1.0`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Float(f) => Some(*f),
            Self::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
    /// Items of a list or a tuple.
    pub fn as_seq(&self) -> Option<&[PickleValue]> {
        match self {
            Self::List(v) | Self::Tuple(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&[(PickleValue, PickleValue)]> {
        match self {
            Self::Dict(v) => Some(v),
            _ => None,
        }
    }
}

/// A tensor as `_rebuild_tensor_v2` describes it: a view (offset, shape, strides in elements) of a storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickledTensor {
    pub dtype: WeightDType,
    /// The storage's name in the archive: its bytes are `<archive>/data/<key>`.
    pub storage_key: String,
    /// Elements in the whole storage.
    pub storage_numel: u64,
    pub offset: u64,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// The result of parsing: the root value and the tensors it refers to.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub root: PickleValue,
    pub tensors: Vec<PickledTensor>,
}

/// Parses `bytes` (the archive entry `entry` of `file`, named in errors) without executing anything.
pub fn parse(file: &Path, entry: &str, bytes: &[u8]) -> Result<Parsed, WeightError> {
    let mut p = Parser {
        file,
        entry,
        bytes,
        pos: 0,
        op_pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        lists: Vec::new(),
        dicts: Vec::new(),
        tensors: Vec::new(),
    };
    let root = p.run()?;
    // Each opcode adds at most one node, so a tree much larger than the input means shared containers
    // expanded many times (or a cycle): refuse rather than exhaust memory.
    let mut budget = bytes.len().saturating_mul(4).saturating_add(1024);
    let root = p.export(&root, 0, &mut budget)?;
    Ok(Parsed { root, tensors: p.tensors })
}

/// The globals this parser interprets.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(WeightDType),
}

#[derive(Clone, Debug)]
struct Storage {
    dtype: WeightDType,
    key: Rc<str>,
    numel: u64,
}

/// A stack or memo item. Mutable containers live in the parser's arenas and are shared by index.
#[derive(Clone, Debug)]
enum Item {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    /// Items and nesting depth (tuples nest by value, so their depth is bounded as they are built).
    Tuple(Rc<[Item]>, usize),
    List(usize),
    Dict(usize),
    Global(Global),
    Storage(Rc<Storage>),
    Tensor(usize),
}

impl Item {
    fn kind(&self) -> &'static str {
        match self {
            Item::None => "None",
            Item::Bool(_) => "a bool",
            Item::Int(_) => "an int",
            Item::Float(_) => "a float",
            Item::Str(_) => "a str",
            Item::Bytes(_) => "bytes",
            Item::Tuple(..) => "a tuple",
            Item::List(_) => "a list",
            Item::Dict(_) => "a dict",
            Item::Global(_) => "a class or function",
            Item::Storage(_) => "a storage",
            Item::Tensor(_) => "a tensor",
        }
    }
}

struct Parser<'a> {
    file: &'a Path,
    entry: &'a str,
    bytes: &'a [u8],
    pos: usize,
    op_pos: usize,
    stack: Vec<Item>,
    marks: Vec<usize>,
    memo: HashMap<u32, Item>,
    lists: Vec<Vec<Item>>,
    dicts: Vec<Vec<(Item, Item)>>,
    tensors: Vec<PickledTensor>,
}

const MAX_DEPTH: usize = 100;

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> WeightError {
        WeightError::Pickle {
            file: self.file.to_path_buf(),
            entry: self.entry.to_string(),
            pos: self.op_pos as u64,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], WeightError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.err(format!("needs {n} more bytes but the pickle ends (truncated, or STOP is missing)")));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WeightError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WeightError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, WeightError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, WeightError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn len(&self, n: u64) -> Result<usize, WeightError> {
        usize::try_from(n).map_err(|_| self.err(format!("length {n} does not fit in memory")))
    }
    fn line(&mut self) -> Result<String, WeightError> {
        let rest = &self.bytes[self.pos..];
        let Some(n) = rest.iter().take(256).position(|&b| b == b'\n') else {
            return Err(self.err("GLOBAL name has no newline within 256 bytes"));
        };
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<Item, WeightError> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Item::Str(Rc::from(s))),
            Err(_) => Err(self.err("string is not UTF-8")),
        }
    }
    fn pop(&mut self) -> Result<Item, WeightError> {
        match self.marks.last() {
            Some(&m) if m >= self.stack.len() => {
                return Err(self.err("pops past a MARK"));
            }
            _ => {}
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }
    fn top(&self) -> Result<&Item, WeightError> {
        match self.marks.last() {
            Some(&m) if m >= self.stack.len() => Err(self.err("reads past a MARK")),
            _ => self.stack.last().ok_or_else(|| self.err("stack underflow")),
        }
    }
    fn pop_mark(&mut self) -> Result<Vec<Item>, WeightError> {
        let m = self.marks.pop().ok_or_else(|| self.err("no MARK to pop to"))?;
        if m > self.stack.len() {
            return Err(self.err("MARK above the stack"));
        }
        Ok(self.stack.split_off(m))
    }
    fn push(&mut self, i: Item) {
        self.stack.push(i);
    }
    fn memo_put(&mut self, idx: u32) -> Result<(), WeightError> {
        let top = self.top()?.clone();
        self.memo.insert(idx, top);
        Ok(())
    }
    fn memo_get(&mut self, idx: u32) -> Result<(), WeightError> {
        let v = self.memo.get(&idx).cloned().ok_or_else(|| self.err(format!("memo entry {idx} was never stored")))?;
        self.push(v);
        Ok(())
    }
    fn int(&self, v: &[u8]) -> Result<i64, WeightError> {
        if v.len() > 8 {
            return Err(self.err(format!("integer of {} bytes does not fit in 64 bits", v.len())));
        }
        if v.is_empty() {
            return Ok(0);
        }
        // Two's complement, little-endian: sign-extend from the top byte.
        let fill = if v[v.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
        let mut a = [fill; 8];
        a[..v.len()].copy_from_slice(v);
        Ok(i64::from_le_bytes(a))
    }
    fn dict_mut(&mut self, at: &Item) -> Result<usize, WeightError> {
        match at {
            Item::Dict(d) => Ok(*d),
            other => Err(self.err(format!("SETITEM(S) on {}, not a dict", other.kind()))),
        }
    }
    fn list_mut(&mut self, at: &Item) -> Result<usize, WeightError> {
        match at {
            Item::List(l) => Ok(*l),
            other => Err(self.err(format!("APPEND(S) on {}, not a list", other.kind()))),
        }
    }
    fn tuple(&self, items: Vec<Item>) -> Result<Item, WeightError> {
        let depth = 1 + items.iter().map(|i| if let Item::Tuple(_, d) = i { *d } else { 0 }).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(self.err(format!("tuples nest deeper than {MAX_DEPTH} levels")));
        }
        Ok(Item::Tuple(Rc::from(items), depth))
    }
    fn new_dict(&mut self, items: Vec<(Item, Item)>) -> Item {
        self.dicts.push(items);
        Item::Dict(self.dicts.len() - 1)
    }
    fn new_list(&mut self, items: Vec<Item>) -> Item {
        self.lists.push(items);
        Item::List(self.lists.len() - 1)
    }

    fn run(&mut self) -> Result<Item, WeightError> {
        loop {
            self.op_pos = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(self.err(format!("pickle protocol {v} is newer than 5")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.u64()?;
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.marks.push(self.stack.len()),
                b'}' => {
                    let d = self.new_dict(Vec::new());
                    self.push(d)
                }
                b']' => {
                    let l = self.new_list(Vec::new());
                    self.push(l)
                }
                b')' => self.push(Item::Tuple(Rc::from(Vec::new()), 1)),
                b'N' => self.push(Item::None),
                0x88 => self.push(Item::Bool(true)),
                0x89 => self.push(Item::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Item::Int(v as i64))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Item::Int(v as i64))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Item::Int(v as i64))
                }
                0x8a | 0x8b => {
                    // LONG1, LONG4
                    let n = if op == 0x8a { self.u8()? as u64 } else { self.u32()? as u64 };
                    let n = self.len(n)?;
                    let v = self.take(n)?.to_vec();
                    let v = self.int(&v)?;
                    self.push(Item::Int(v))
                }
                b'G' => {
                    // BINFLOAT is big-endian.
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.push(Item::Float(v))
                }
                b'X' | 0x8c | 0x8d => {
                    // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                    let n = match op {
                        b'X' => self.u32()? as u64,
                        0x8c => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let n = self.len(n)?;
                    let s = self.utf8(n)?;
                    self.push(s)
                }
                b'C' | b'B' | 0x8e => {
                    // SHORT_BINBYTES, BINBYTES, BINBYTES8
                    let n = match op {
                        b'C' => self.u8()? as u64,
                        b'B' => self.u32()? as u64,
                        _ => self.u64()?,
                    };
                    let n = self.len(n)?;
                    let b = Rc::from(self.take(n)?);
                    self.push(Item::Bytes(b))
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let t = self.tuple(items)?;
                    self.push(t)
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let t = self.tuple(items)?;
                    self.push(t)
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let l = self.new_list(items);
                    self.push(l)
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let d = self.new_dict(pairs);
                    self.push(d)
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let top = self.top()?.clone();
                    let d = self.dict_mut(&top)?;
                    self.dicts[d].push((k, v));
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    let top = self.top()?.clone();
                    let d = self.dict_mut(&top)?;
                    self.dicts[d].extend(pairs);
                }
                b'a' => {
                    let v = self.pop()?;
                    let top = self.top()?.clone();
                    let l = self.list_mut(&top)?;
                    self.lists[l].push(v);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let top = self.top()?.clone();
                    let l = self.list_mut(&top)?;
                    self.lists[l].extend(items);
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| self.err("memo overflow"))?;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.memo_get(i)?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?.clone();
                    self.push(t)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(&module, &name)?;
                    self.push(Item::Global(g))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Item::Str(module), Item::Str(name)) = (&module, &name) else {
                        return Err(self.err("STACK_GLOBAL needs two strings"));
                    };
                    let g = self.global(module, name)?;
                    self.push(Item::Global(g))
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.persistent(&pid)?;
                    self.push(Item::Storage(Rc::new(s)))
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.reduce(&f, &args)?;
                    self.push(v)
                }
                b'b' => {
                    // BUILD: only the `_metadata` attribute torch sets on state-dict OrderedDicts.
                    let _state = self.pop()?;
                    match self.top()? {
                        Item::Dict(_) => {}
                        other => {
                            return Err(self.err(format!(
                                "BUILD (setting object state) on {}: only OrderedDict state is accepted",
                                other.kind()
                            )))
                        }
                    }
                }
                other => {
                    return Err(WeightError::RefusedOpcode {
                        file: self.file.to_path_buf(),
                        entry: self.entry.to_string(),
                        opcode: other,
                        name: opcode_name(other),
                        pos: self.op_pos as u64,
                    })
                }
            }
        }
    }

    fn pairs(&self, items: Vec<Item>) -> Result<Vec<(Item, Item)>, WeightError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            out.push((k, v));
        }
        Ok(out)
    }

    fn global(&self, module: &str, name: &str) -> Result<Global, WeightError> {
        let g = match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch", storage) => WeightDType::from_torch_storage(storage).map(Global::Storage),
            _ => None,
        };
        g.ok_or_else(|| WeightError::RefusedClass { file: self.file.to_path_buf(), class: format!("{module}.{name}") })
    }

    /// `('storage', torch.XStorage, key, location, numel)`, as torch's persistent_id writes it.
    fn persistent(&self, pid: &Item) -> Result<Storage, WeightError> {
        let bad = || self.err("persistent id is not ('storage', torch.<Type>Storage, key, location, numel)");
        let Item::Tuple(t, _) = pid else {
            return Err(bad());
        };
        match &t[..] {
            [Item::Str(tag), Item::Global(Global::Storage(dtype)), Item::Str(key), Item::Str(_location), Item::Int(numel)]
                if &**tag == "storage" && *numel >= 0 =>
            {
                Ok(Storage { dtype: *dtype, key: key.clone(), numel: *numel as u64 })
            }
            _ => Err(bad()),
        }
    }

    fn reduce(&mut self, f: &Item, args: &Item) -> Result<Item, WeightError> {
        let Item::Tuple(args, _) = args else {
            return Err(self.err(format!("REDUCE arguments are {}, not a tuple", args.kind())));
        };
        match f {
            Item::Global(Global::OrderedDict) => match &args[..] {
                [] => Ok(self.new_dict(Vec::new())),
                [Item::List(l)] => {
                    let mut pairs = Vec::new();
                    for p in self.lists[*l].clone() {
                        match p {
                            Item::Tuple(kv, _) if kv.len() == 2 => pairs.push((kv[0].clone(), kv[1].clone())),
                            _ => return Err(self.err("OrderedDict([...]) items are not (key, value) pairs")),
                        }
                    }
                    Ok(self.new_dict(pairs))
                }
                _ => Err(self.err("OrderedDict called with unexpected arguments")),
            },
            Item::Global(Global::RebuildTensorV2) => self.rebuild_tensor(&args[..]),
            Item::Global(Global::RebuildParameter) => match &args[..] {
                [t @ Item::Tensor(_), Item::Bool(_), _hooks] => Ok(t.clone()),
                _ => Err(self.err("_rebuild_parameter arguments are not (tensor, requires_grad, hooks)")),
            },
            Item::Global(Global::Storage(d)) => Err(self
                .err(format!("a {d} storage is called directly; torch.save refers to storages only by persistent id"))),
            other => Err(self.err(format!("REDUCE calls {}", other.kind()))),
        }
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks[, metadata])`.
    fn rebuild_tensor(&mut self, args: &[Item]) -> Result<Item, WeightError> {
        let (storage, offset, size, stride) = match args {
            [Item::Storage(s), Item::Int(o), Item::Tuple(size, _), Item::Tuple(stride, _), Item::Bool(_), _hooks]
            | [Item::Storage(s), Item::Int(o), Item::Tuple(size, _), Item::Tuple(stride, _), Item::Bool(_), _hooks, _] => {
                (s.clone(), *o, size.clone(), stride.clone())
            }
            _ => {
                return Err(self
                    .err("_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, requires_grad, hooks)"))
            }
        };
        let dims = |t: &[Item]| -> Option<Vec<usize>> {
            t.iter()
                .map(|d| match d {
                    Item::Int(v) => usize::try_from(*v).ok(),
                    _ => None,
                })
                .collect()
        };
        let (Some(shape), Some(stride), Ok(offset)) = (dims(&size), dims(&stride), u64::try_from(offset)) else {
            return Err(self.err("tensor offset, size or stride is not a non-negative integer"));
        };
        if shape.len() != stride.len() {
            return Err(self.err(format!("tensor size {shape:?} and stride {stride:?} differ in rank")));
        }
        self.tensors.push(PickledTensor {
            dtype: storage.dtype,
            storage_key: storage.key.to_string(),
            storage_numel: storage.numel,
            offset,
            shape,
            stride,
        });
        Ok(Item::Tensor(self.tensors.len() - 1))
    }

    /// Copies an item out of the arena as a tree, within `budget` nodes and [`MAX_DEPTH`] levels.
    fn export(&self, item: &Item, depth: usize, budget: &mut usize) -> Result<PickleValue, WeightError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("values nest deeper than {MAX_DEPTH} levels (or refer to themselves)")));
        }
        *budget = budget
            .checked_sub(1)
            .ok_or_else(|| self.err("shared values expand to far more objects than the pickle holds"))?;
        let seq = |items: &[Item], budget: &mut usize| -> Result<Vec<PickleValue>, WeightError> {
            items.iter().map(|i| self.export(i, depth + 1, budget)).collect()
        };
        Ok(match item {
            Item::None => PickleValue::None,
            Item::Bool(b) => PickleValue::Bool(*b),
            Item::Int(i) => PickleValue::Int(*i),
            Item::Float(f) => PickleValue::Float(*f),
            Item::Str(s) => PickleValue::Str(s.to_string()),
            Item::Bytes(b) => PickleValue::Bytes(b.to_vec()),
            Item::Tuple(t, _) => PickleValue::Tuple(seq(t, budget)?),
            Item::List(l) => PickleValue::List(seq(&self.lists[*l], budget)?),
            Item::Dict(d) => PickleValue::Dict(
                self.dicts[*d]
                    .iter()
                    .map(|(k, v)| Ok((self.export(k, depth + 1, budget)?, self.export(v, depth + 1, budget)?)))
                    .collect::<Result<_, WeightError>>()?,
            ),
            Item::Tensor(t) => PickleValue::Tensor(*t),
            Item::Global(_) | Item::Storage(_) => {
                return Err(self.err(format!("the result holds {}, which is not data", item.kind())))
            }
        })
    }
}

/// Names of the opcodes outside the subset, for the refusal message.
fn opcode_name(op: u8) -> &'static str {
    match op {
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        0x82..=0x84 => "EXT",
        b'P' => "PERSID (text)",
        b'I' => "INT (text)",
        b'L' => "LONG (text)",
        b'F' => "FLOAT (text)",
        b'S' | b'T' | b'U' => "STRING (protocol 0/1)",
        b'V' => "UNICODE (text)",
        b'g' => "GET (text)",
        b'p' => "PUT (text)",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown opcode",
    }
}
