//! Aligned plain-text tables, optionally coloured (widths ignore the colour codes).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Good,
    Bad,
    Warn,
}

impl Style {
    fn ansi(self) -> Option<&'static str> {
        match self {
            Self::Plain => None,
            Self::Good => Some("\x1b[32m"),
            Self::Bad => Some("\x1b[1;31m"),
            Self::Warn => Some("\x1b[33m"),
        }
    }

    /// `text` wrapped in this style's colour when `color` is on.
    pub fn paint(self, text: &str, color: bool) -> String {
        match self.ansi() {
            Some(code) if color => format!("{code}{text}\x1b[0m"),
            _ => text.to_owned(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl Cell {
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            style: Style::Plain,
        }
    }

    pub fn styled(text: impl Into<String>, style: Style) -> Self {
        Self {
            text: text.into(),
            style,
        }
    }
}

pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<Cell>>,
}

const GAP: &str = "  ";

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Missing cells print as empty; extra cells are dropped.
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.text.chars().count())
                    .chain([name.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// One line per row, columns separated by two spaces, no trailing blanks.
    pub fn render(&self, color: bool) -> String {
        let widths = self.widths();
        let header: Vec<Cell> = self.columns.iter().map(|(n, _)| Cell::plain(*n)).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, ((_, align), width)) in self.columns.iter().zip(&widths).enumerate() {
                let empty = Cell::plain("");
                let cell = row.get(i).unwrap_or(&empty);
                let pad = " ".repeat(width.saturating_sub(cell.text.chars().count()));
                if i > 0 {
                    line.push_str(GAP);
                }
                let painted = cell.style.paint(&cell.text, color);
                match align {
                    Align::Left => {
                        line.push_str(&painted);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(&painted);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_numbers_align_right() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("N", Align::Right),
            ("X", Align::Left),
        ]);
        t.row(vec![Cell::plain("a"), Cell::plain("1"), Cell::plain("x")]);
        t.row(vec![
            Cell::plain("long-name"),
            Cell::plain("1000"),
            Cell::plain(""),
        ]);
        assert_eq!(
            t.render(false),
            "NAME          N  X\n\
             a             1  x\n\
             long-name  1000\n"
        );
    }

    #[test]
    fn colour_does_not_change_alignment() {
        let mut t = Table::new(&[("A", Align::Left), ("B", Align::Left)]);
        t.row(vec![Cell::styled("up", Style::Good), Cell::plain("z")]);
        t.row(vec![Cell::styled("down", Style::Bad), Cell::plain("z")]);
        let plain = t.render(false);
        let coloured = t.render(true);
        assert!(coloured.contains("\x1b[32mup\x1b[0m  "), "{coloured:?}");
        let strip = |s: &str| {
            s.replace("\x1b[32m", "")
                .replace("\x1b[1;31m", "")
                .replace("\x1b[0m", "")
        };
        assert_eq!(strip(&coloured), plain);
    }
}
