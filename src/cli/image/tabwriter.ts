/**
 * Go's `text/tabwriter` as the docker CLI configures it for its tables (`minwidth 10, tabwidth 1,
 * padding 3, ' '`): cells end at a tab, every column is as wide as its widest cell plus three
 * spaces (at least ten), and the text after a line's last tab is not part of any column. Widths are
 * computed per column block (consecutive lines that have the column), as Go does, so custom
 * `--format 'table …'` templates line up exactly as docker's would.
 */

export interface TabwriterOptions {
  minwidth?: number;
  padding?: number;
}

/** Aligns `text` (lines separated by `\n`, cells by `\t`). */
export function tabwrite(text: string, opts: TabwriterOptions = {}): string {
  const minwidth = opts.minwidth ?? 10;
  const padding = opts.padding ?? 3;
  const lines = text.split('\n').map((l) => l.split('\t'));
  const widths: number[] = [];
  const out: string[] = [];
  const width = (s: string): number => [...s].length;

  const writeLines = (line0: number, line1: number): void => {
    for (let i = line0; i < line1; i++) {
      const cells = lines[i]!;
      let s = '';
      cells.forEach((c, j) => {
        s += c;
        if (j < widths.length && j < cells.length - 1) s += ' '.repeat(Math.max(0, widths[j]! - width(c)));
      });
      out.push(s);
    }
  };

  const format = (line0: number, line1: number): void => {
    const column = widths.length;
    for (let i = line0; i < line1; i++) {
      if (column >= lines[i]!.length - 1) continue;
      // A block of lines that all have a cell in this column begins here.
      writeLines(line0, i);
      line0 = i;
      let w = minwidth;
      for (; i < line1; i++) {
        const cells = lines[i]!;
        if (column >= cells.length - 1) break;
        w = Math.max(w, width(cells[column]!) + padding);
      }
      widths.push(w);
      format(line0, i);
      widths.pop();
      line0 = i;
      i--;
    }
    writeLines(line0, line1);
  };

  format(0, lines.length);
  return out.join('\n');
}
