// docs/api.md from the compiled descriptors (buf build keeps the proto comments as source info):
//   node --import tsx scripts/api-docs.ts dist/descriptors/agent.binpb docs/api.md
// `make proto` runs it; a test fails when docs/api.md drifts, or when an element has no comment.
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { fromBinary, isFieldSet } from '@bufbuild/protobuf';
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FieldDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
} from '@bufbuild/protobuf/wkt';

export const API_FILE = 'pidfd/agent/v1/agent.proto';

// Field numbers of FileDescriptorProto / DescriptorProto / EnumDescriptorProto /
// ServiceDescriptorProto, which make up the paths of SourceCodeInfo.Location.
const MESSAGE = 4;
const ENUM = 5;
const SERVICE = 6;
const FIELD = 2;
const NESTED = 3;
const NESTED_ENUM = 4;
const ENUM_VALUE = 2;
const METHOD = 2;

/** One element of the API with its comment ('' when it has none). */
interface Element {
  readonly kind: 'service' | 'rpc' | 'message' | 'field' | 'enum' | 'value';
  readonly name: string;
  readonly comment: string;
}

function apiFile(set: Uint8Array): FileDescriptorProto {
  const file = fromBinary(FileDescriptorSetSchema, set).file.find((f) => f.name === API_FILE);
  if (!file) throw new Error(`${API_FILE} is not in the descriptor set`);
  return file;
}

function commentsOf(file: FileDescriptorProto): (path: number[]) => string {
  const byPath = new Map<string, string>();
  for (const loc of file.sourceCodeInfo?.location ?? []) {
    const text = (loc.leadingComments ?? '').replace(/^ /gm, '').trim();
    if (text) byPath.set(loc.path.join('.'), text);
  }
  return (path) => byPath.get(path.join('.')) ?? '';
}

/** Every service, rpc, message, field, enum and enum value of the API file, in file order. */
function elements(file: FileDescriptorProto): Element[] {
  const comment = commentsOf(file);
  const out: Element[] = [];
  const enumElements = (e: EnumDescriptorProto, path: number[], prefix: string) => {
    out.push({ kind: 'enum', name: prefix + e.name, comment: comment(path) });
    e.value.forEach((v, i) => out.push({ kind: 'value', name: `${prefix}${e.name}.${v.name}`, comment: comment([...path, ENUM_VALUE, i]) }));
  };
  const messageElements = (m: DescriptorProto, path: number[], prefix: string) => {
    if (m.options?.mapEntry) return;
    out.push({ kind: 'message', name: prefix + m.name, comment: comment(path) });
    m.field.forEach((f, i) => out.push({ kind: 'field', name: `${prefix}${m.name}.${f.name}`, comment: comment([...path, FIELD, i]) }));
    m.nestedType.forEach((n, i) => messageElements(n, [...path, NESTED, i], `${prefix}${m.name}.`));
    m.enumType.forEach((e, i) => enumElements(e, [...path, NESTED_ENUM, i], `${prefix}${m.name}.`));
  };
  file.service.forEach((s, i) => {
    out.push({ kind: 'service', name: s.name, comment: comment([SERVICE, i]) });
    s.method.forEach((m, j) => out.push({ kind: 'rpc', name: `${s.name}.${m.name}`, comment: comment([SERVICE, i, METHOD, j]) }));
  });
  file.messageType.forEach((m, i) => messageElements(m, [MESSAGE, i], ''));
  file.enumType.forEach((e, i) => enumElements(e, [ENUM, i], ''));
  return out;
}

/** The elements without a comment, as `kind name`. */
export function undocumented(set: Uint8Array): string[] {
  return elements(apiFile(set))
    .filter((e) => e.comment === '')
    .map((e) => `${e.kind} ${e.name}`);
}

const scalar: Partial<Record<Type, string>> = {
  [Type.DOUBLE]: 'double',
  [Type.FLOAT]: 'float',
  [Type.INT64]: 'int64',
  [Type.UINT64]: 'uint64',
  [Type.INT32]: 'int32',
  [Type.FIXED64]: 'fixed64',
  [Type.FIXED32]: 'fixed32',
  [Type.BOOL]: 'bool',
  [Type.STRING]: 'string',
  [Type.BYTES]: 'bytes',
  [Type.UINT32]: 'uint32',
  [Type.SFIXED32]: 'sfixed32',
  [Type.SFIXED64]: 'sfixed64',
  [Type.SINT32]: 'sint32',
  [Type.SINT64]: 'sint64',
};

const local = (typeName: string, pkg: string) => typeName.replace(/^\./, '').replace(`${pkg}.`, '');
/** A link for the API's own types, plain text for google.protobuf ones. */
const typeRef = (typeName: string, pkg: string) => {
  const name = local(typeName, pkg);
  return typeName.startsWith(`.${pkg}.`) ? `[${name}](#${name.toLowerCase().replace(/\./g, '')})` : `\`${name}\``;
};

function fieldType(f: FieldDescriptorProto, owner: DescriptorProto, pkg: string): string {
  const entry = owner.nestedType.find((n) => n.options?.mapEntry && `.${pkg}.${owner.name}.${n.name}` === f.typeName);
  if (entry) return `map<${entry.field.map((e) => fieldType(e, entry, pkg)).join(', ')}>`;
  const base = f.typeName ? typeRef(f.typeName, pkg) : `\`${scalar[f.type] ?? Type[f.type]}\``;
  if (f.label === Label.REPEATED) return `repeated ${base}`;
  if (f.proto3Optional) return `optional ${base}`;
  return base;
}

/** An RPC's comment: its error list set apart. */
const block = (text: string) => text.replace(/\n(Errors \(code \/ reason\)[^\n]*)\n/g, '\n\n**$1**\n\n');

/** A comment inside a table cell: one line, pipes escaped. */
const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n\n+/g, '<br><br>').replace(/\n/g, ' ');

export function apiDocs(set: Uint8Array): string {
  const file = apiFile(set);
  const comment = commentsOf(file);
  const pkg = file.package;
  const lines: string[] = [
    `# API reference: \`${pkg}\``,
    '',
    `<!-- Generated from proto/${API_FILE} by scripts/api-docs.ts (make proto). Do not edit: edit the proto comments. -->`,
    '',
    `Every message, field and enum value of \`proto/${API_FILE}\`, with its comment. Errors are gRPC`,
    'status codes with a `google.rpc.ErrorInfo` detail (domain `pidfd.agent`) whose `reason` is named',
    'after each code below (`CODE` / `REASON`); its metadata names the `field`, `path`, `syscall` or',
    '`handle` concerned. A reason in the form `E...` is the errno name the kernel gave.',
    '',
  ];
  const options = file.options;
  if (options) {
    lines.push('| Option | Value |', '|---|---|');
    for (const [key, value] of [
      ['go_package', options.goPackage],
      ['java_package', options.javaPackage],
      ['csharp_namespace', options.csharpNamespace],
    ] as const) {
      if (value) lines.push(`| \`${key}\` | \`${value}\` |`);
    }
    lines.push('');
  }
  file.service.forEach((s, i) => {
    lines.push(`## Service \`${s.name}\``, '', comment([SERVICE, i]), '');
    s.method.forEach((m, j) => {
      const stream = m.serverStreaming ? 'stream ' : '';
      lines.push(`### ${m.name}`, '', `\`rpc ${m.name}(${local(m.inputType, pkg)}) returns (${stream}${local(m.outputType, pkg)})\``, '');
      lines.push(block(comment([SERVICE, i, METHOD, j])), '');
    });
  });
  lines.push('## Messages', '');
  const message = (m: DescriptorProto, path: number[], prefix: string) => {
    if (m.options?.mapEntry) return;
    lines.push(`### ${prefix}${m.name}`, '');
    const text = comment(path);
    if (text) lines.push(text, '');
    if (m.field.length > 0) {
      lines.push('| Field | Number | Type | Description |', '|---|---|---|---|');
      m.field.forEach((f, k) => {
        const oneof = isFieldSet(f, FieldDescriptorProtoSchema.field.oneofIndex) && !f.proto3Optional ? ` (oneof \`${m.oneofDecl[f.oneofIndex]?.name}\`)` : '';
        lines.push(`| \`${f.name}\` | ${f.number} | ${fieldType(f, m, pkg)}${oneof} | ${cell(comment([...path, FIELD, k]))} |`);
      });
    } else {
      lines.push('No fields.');
    }
    lines.push('');
    m.nestedType.forEach((n, k) => message(n, [...path, NESTED, k], `${prefix}${m.name}.`));
    m.enumType.forEach((e, k) => enumeration(e, [...path, NESTED_ENUM, k], `${prefix}${m.name}.`));
  };
  const enumeration = (e: EnumDescriptorProto, path: number[], prefix: string) => {
    lines.push(`### ${prefix}${e.name}`, '', comment(path), '', '| Value | Number | Description |', '|---|---|---|');
    e.value.forEach((v, k) => lines.push(`| \`${v.name}\` | ${v.number} | ${cell(comment([...path, ENUM_VALUE, k]))} |`));
    lines.push('');
  };
  file.messageType.forEach((m, i) => message(m, [MESSAGE, i], ''));
  lines.push('## Enums', '');
  file.enumType.forEach((e, i) => enumeration(e, [ENUM, i], ''));
  return `${lines.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    console.error('usage: api-docs.ts DESCRIPTORS.binpb OUTPUT.md');
    process.exit(2);
  }
  writeFileSync(output, apiDocs(readFileSync(input)));
}
