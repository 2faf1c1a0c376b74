/** The output of the inspect commands: docker's indented JSON array, or one line a document for `--format`. */
import { goJson, parseTemplate } from './image/template.js';

/** Writes `docs` as `--format TEMPLATE` renders them (`json`, or none: the JSON array, `[]` when empty). */
export function writeInspectDocuments(docs: ReadonlyArray<Record<string, unknown>>, format: string | undefined): void {
  const template = format?.trim();
  if (template && template !== 'json') {
    const tmpl = parseTemplate(template.replace(/\\t/g, '\t').replace(/\\n/g, '\n'));
    process.stdout.write(docs.map((d) => `${tmpl.execute(d)}\n`).join(''));
  } else {
    // docker prints `[]` when nothing was found, before the error.
    process.stdout.write(`${goJson(docs, '    ')}\n`);
  }
}
