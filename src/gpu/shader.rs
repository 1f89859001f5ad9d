//! Shader families and their specialisation. A family is one WGSL file; a [`Spec`] names one variant of it: the
//! element type swapped into the `alias T = f32;` line, `enable f16;` prepended, snippets from `shaders/common/`
//! appended, and `override` constants set at pipeline creation. Nothing else edits shader text.

/// How a storage binding is accessed. Bindings are numbered in order; the uniform `Params` comes last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
}

/// One WGSL file.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub source: &'static str,
}

/// One variant of a family, ready to compile.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Names the pipeline in the cache, validation errors and bench lines, e.g. `gemm.q4.t64`.
    pub label: String,
    pub family: &'static Family,
    pub entry: &'static str,
    pub bindings: Vec<Access>,
    /// Replaces `f32` in the line `alias T = f32;`.
    pub elem: Option<&'static str>,
    pub enable_f16: bool,
    /// Further `enable` directives (e.g. `wgpu_cooperative_matrix`).
    pub enables: Vec<&'static str>,
    pub snippets: Vec<&'static str>,
    pub constants: Vec<(&'static str, f64)>,
}

impl Spec {
    pub fn new(family: &'static Family, entry: &'static str, bindings: &[Access]) -> Self {
        Self {
            label: if entry == family.name { family.name.to_string() } else { format!("{}.{}", family.name, entry) },
            family,
            entry,
            bindings: bindings.to_vec(),
            elem: None,
            enable_f16: false,
            enables: Vec::new(),
            snippets: Vec::new(),
            constants: Vec::new(),
        }
    }

    /// Appends `.part` to the label.
    pub fn tag(mut self, part: &str) -> Self {
        self.label.push('.');
        self.label.push_str(part);
        self
    }

    pub fn snippet(mut self, s: &'static str) -> Self {
        self.snippets.push(s);
        self
    }

    pub fn constant(mut self, name: &'static str, value: f64) -> Self {
        self.constants.push((name, value));
        self
    }

    pub fn f16(mut self) -> Self {
        self.enable_f16 = true;
        self.elem = Some("f16");
        self
    }

    /// Adds `enable NAME;` (a language extension the variant needs; the caller checks the adapter offers it).
    pub fn enable(mut self, name: &'static str) -> Self {
        self.enables.push(name);
        self
    }

    /// The WGSL text of this variant.
    pub fn source(&self) -> String {
        let mut out = String::new();
        if self.enable_f16 {
            out.push_str("enable f16;\n");
        }
        for e in &self.enables {
            out.push_str(&format!("enable {e};\n"));
        }
        for line in self.family.source.lines() {
            match (self.elem, line.trim_start().strip_prefix("alias T = f32;")) {
                (Some(elem), Some(rest)) => {
                    out.push_str(&format!("alias T = {elem};{rest}"));
                }
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        for s in &self.snippets {
            out.push_str(s);
            out.push('\n');
        }
        out
    }

    /// The cache key: the label plus everything that changes the compiled code.
    pub(crate) fn key(&self) -> String {
        let mut k = format!("{}|{}|{:?}|{}|{:?}", self.label, self.entry, self.elem, self.enable_f16, self.enables);
        for s in &self.snippets {
            k.push_str(&format!("|{:p}", s.as_ptr()));
        }
        for (n, v) in &self.constants {
            k.push_str(&format!("|{n}={v}"));
        }
        k
    }
}
