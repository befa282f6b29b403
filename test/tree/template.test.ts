import { describe, expect, it } from 'vitest';
import { TemplateSet } from '../../src/tree/template/exec.js';

const V = {
  Values: {
    name: 'cos',
    version: '1.2.3',
    codename: 'teal',
    arch: 'x86_64',
    zero: 0,
    yes: true,
    no: false,
    empty: '',
    list: ['a', 'b', 'c'],
    skip: ['golang', 'golang-fips'],
    labels: { 'github.owner': 'rancher', 'package.checksum': 'abc' },
    nested: { deep: { x: 1 } },
    nil: null,
  },
};

function render(src: string, data: unknown = V, defs = ''): string {
  const ts = new TemplateSet();
  if (defs) ts.addDefinitions(defs, 'templates/t.yaml');
  return ts.render(src, 'build.yaml', data);
}

describe('Go text/template subset', () => {
  it.each([
    ['{{ .Values.name }}', 'cos'],
    ['{{.Values.name}}-{{.Values.version}}', 'cos-1.2.3'],
    ['{{ .Values.zero }} {{ .Values.yes }}', '0 true'],
    ['{{ .Values.list }}', '[a b c]'],
    ['{{ .Values.nested }}', 'map[deep:map[x:1]]'],
    ['{{ index .Values.labels "github.owner" }}', 'rancher'],
    ['{{ ( index .Values.labels "package.checksum" ) }}', 'abc'],
    ['{{ index .Values.list 1 }}', 'b'],
    ['{{ if .Values.yes }}Y{{ end }}', 'Y'],
    ['{{ if .Values.no }}Y{{ else }}N{{ end }}', 'N'],
    ['{{ if .Values.missing }}Y{{ else }}N{{ end }}', 'N'],
    ['{{ if .Values.empty }}Y{{ else }}N{{ end }}', 'N'],
    ['{{ if .Values.zero }}Y{{ else }}N{{ end }}', 'N'],
    ['{{if eq .Values.arch "aarch64"}}A{{else if eq .Values.arch "x86_64"}}X{{else}}?{{end}}', 'X'],
    ['{{if eq .Values.arch "a"}}A{{else if eq .Values.arch "b"}}B{{else}}?{{end}}', '?'],
    ['{{ if eq .Values.codename "blue" "teal" }}in{{ end }}', 'in'],
    ['{{ if ne .Values.codename "teal" }}x{{ else }}teal{{ end }}', 'teal'],
    ['{{ if eq .Values.missing "teal" }}x{{ else }}no{{ end }}', 'no'],
    ['{{ if and .Values.yes .Values.name }}both{{ end }}', 'both'],
    ['{{ and .Values.yes .Values.name }}', 'cos'],
    ['{{ or .Values.empty .Values.name }}', 'cos'],
    ['{{ if or (eq .Values.name "x") (eq .Values.name\n"cos") }}multi-line{{ end }}', 'multi-line'],
    ['{{ if not .Values.no }}not{{ end }}', 'not'],
    [
      '{{ if and .Values.skip (has .Values.name .Values.skip) }}skip{{ else }}check{{ end }}',
      'check',
    ],
    [
      '{{ if and .Values.missing (has .Values.name .Values.missing) }}skip{{ else }}check{{ end }}',
      'check',
    ],
    ['{{ if has "golang" .Values.skip }}skip{{ end }}', 'skip'],
    ['{{ if lt 1 2 }}lt{{ end }}{{ if gt 1 2 }}gt{{ end }}', 'lt'],
    ['{{ range .Values.list }}[{{ . }}]{{ end }}', '[a][b][c]'],
    ['{{ range $i, $v := .Values.list }}{{ $i }}={{ $v }} {{ end }}', '0=a 1=b 2=c '],
    ['{{ range $k, $v := .Values.labels }}{{ $k }};{{ end }}', 'github.owner;package.checksum;'],
    ['{{ range .Values.missing }}x{{ else }}none{{ end }}', 'none'],
    ['{{ range .Values.list }}{{ if eq . "b" }}{{ break }}{{ end }}{{ . }}{{ end }}', 'a'],
    ['{{ range .Values.list }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ . }}{{ end }}', 'ac'],
    ['{{ with .Values.nested.deep }}{{ .x }}{{ end }}', '1'],
    ['{{ with .Values.missing }}x{{ else }}w{{ end }}', 'w'],
    ['{{ $x := .Values.name }}{{ $x }}', 'cos'],
    ['{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}', '2'],
    ['{{ $version:= get . "version" }}[{{ $version }}]', '[]'],
    ['{{ range .Values.list }}{{ $.Values.name }}{{ end }}', 'coscoscos'],
    [
      '{{ $opts := dict "version" .Values.version "org" "o" }}{{ get $opts "version" }}/{{ get $opts "nope" }}',
      '1.2.3/',
    ],
    ['{{ get (dict "a" 1) "host" | default "github.com" }}', 'github.com'],
    ['{{ default "d" .Values.missing }} {{ default "d" .Values.name }}', 'd cos'],
    ['{{ hasKey .Values.labels "github.owner" }}', 'true'],
    ['{{ printf "v%s" .Values.version }}', 'v1.2.3'],
    ['{{ printf "%d-%q-%v" 3 "x" .Values.list }}', '3-"x"-[a b c]'],
    ['{{ .Values.name | upper }} {{ "ABC" | lower }}', 'COS abc'],
    ['{{ quote .Values.name }}', '"cos"'],
    ['{{ replace "-" "_" "a-b-c" }}', 'a_b_c'],
    ['{{ trim "  x  " }}', 'x'],
    ['{{ join "," .Values.list }}', 'a,b,c'],
    ['{{ (split "." "a.b")._1 }}', 'b'],
    ['{{ list 1 2 | toYaml }}', '- 1\n- 2'],
    [
      '{{ .Values.labels | toYaml | nindent 2 }}',
      '\n  github.owner: rancher\n  package.checksum: abc',
    ],
    ['{{ len .Values.list }}', '3'],
    ['{{ print "a" 1 2 "b" }}', 'a1 2b'],
    ['a  {{- " b " -}}  c', 'a b c'],
    ['- git {{- if .Values.no -}} upx {{- end }}\n', '- git\n'],
    ['- git {{- if .Values.yes -}} upx {{- end }}\n', '- gitupx\n'],
    ['x {{/* a comment */}} y', 'x  y'],
    ['x {{- /* trimmed */ -}} y', 'xy'],
    ['{{ `raw "str"` }}', 'raw "str"'],
    ['{{ "tab\\tquote\\"" }}', 'tab\tquote"'],
    ['{{ 1.5 }} {{ -3 }} {{ 0x10 }}', '1.5 -3 16'],
  ])('%s', (src, want) => {
    expect(render(src)).toBe(want);
  });

  it('runs define/template/include from shared templates with their own dot', () => {
    const defs = [
      '{{ define "env" }}- PATH=/go/bin{{ end }}',
      '{{ define "pkg" }}{{ $h := get . "host" | default "github.com" }}{{ $h }}/{{ get . "org" }}{{ end }}',
      '{{ define "distro" }}{{ if eq .Values.codename "teal" }}zypper in {{ .Packages }}{{ end }}{{ end }}',
    ].join('\n');
    expect(render('{{ template "env" }}', V, defs)).toBe('- PATH=/go/bin');
    expect(render('{{ template "pkg" (dict "org" "rancher") }}', V, defs)).toBe(
      'github.com/rancher',
    );
    expect(
      render('{{ template "distro" (dict "Values" .Values "Packages" "curl") }}', V, defs),
    ).toBe('zypper in curl');
    expect(render('[{{ include "env" . | upper }}]', V, defs)).toBe('[- PATH=/GO/BIN]');
    // a define in the rendered file itself
    expect(render('{{ define "x" }}X{{ .Values.name }}{{ end }}{{ template "x" . }}')).toBe('Xcos');
  });

  it.each([
    [
      'line 1\n{{ frobnicate .Values.x }}',
      /^build\.yaml:2: template: function "frobnicate" is not supported/,
    ],
    [
      '{{ if false }}\n\n{{ tpl "x" . }}{{ end }}',
      /^build\.yaml:3: template: function "tpl" is not supported/,
    ],
    ['{{ block "x" . }}{{ end }}', /^build\.yaml:1: template: "\{\{block\}\}" is not supported/],
    ['\n{{ if .Values.yes }}', /^build\.yaml:2: template: unclosed \{\{if\}\}/],
    ['{{ end }}', /^build\.yaml:1: template: unexpected \{\{end\}\}/],
    ['a\n{{ .Values.name', /^build\.yaml:2: template: unclosed action/],
    ['{{ template "nope" . }}', /^build\.yaml:1: template: no template "nope" is defined/],
    ['{{ $x = 1 }}', /^build\.yaml:1: template: undefined variable: \$x/],
    ['\n\n{{ .Values.name.x }}', /^build\.yaml:3: template: can't evaluate field x in type string/],
    ['{{ .Values.nil.x }}', /^build\.yaml:1: template: nil pointer evaluating \.Values\.nil\.x/],
    ['{{ eq .Values.zero "0" }}', /^build\.yaml:1: template: error calling eq: incompatible types/],
    ['{{ .Values.name "arg" }}', /^build\.yaml:1: template: can't give argument to non-function/],
    [
      '{{ index .Values.list 9 }}',
      /^build\.yaml:1: template: error calling index: index out of range/,
    ],
    ['{{ range 3 }}{{ template "loop" . }}{{ end }}', /no template "loop"/],
    // missingkey=error for output: printing a missing value is an error, not "<no value>"
    [
      'chmod 0755 /system/oem/\n/{{ .Values.missing }}/*',
      /^build\.yaml:2: template: \.Values\.missing has no value \(it would render as "<no value>"\)/,
    ],
    [
      '{{ .Values.missing.deeper }}',
      /^build\.yaml:1: template: \.Values\.missing\.deeper has no value/,
    ],
    ['{{ .Values.nil }}', /^build\.yaml:1: template: \.Values\.nil has no value/],
    ['{{ index .Values.labels "nope" }}', /^build\.yaml:1: template: the action has no value/],
    ['{{ $x := .Values.missing }}{{ $x }}', /^build\.yaml:1: template: \$x has no value/],
  ])('fails clearly: %s', (src, re) => {
    expect(() => render(src)).toThrow(re);
  });

  it('finds the end of an action past quoted strings and comments', () => {
    expect(render('{{ "a}}b" }}|{{ "q\\"}}" }}')).toBe('a}}b|q"}}');
    expect(render('{{ `x}}\ny` }}')).toBe('x}}\ny'); // a raw string may span lines
    expect(render("{{ 'a' }}|{{/* a }} comment */}}X")).toBe('97|X');
    expect(render('{{ print "}" "{{" }}}')).toBe('}{{}');
    expect(() => render('\n{{ "abc }}')).toThrow(
      /^build\.yaml:2: template: unterminated quoted string/,
    );
    expect(() => render('{{ "a\nb" }}')).toThrow(/^build\.yaml:1: template: unterminated quoted/);
    expect(() => render('{{ "a\\\nb" }}')).toThrow(/unterminated quoted string/);
    expect(() => render('{{ /* x }}')).toThrow(/^build\.yaml:1: template: unclosed comment/);
  });

  it('stops runaway recursion and output', () => {
    const ts = new TemplateSet();
    ts.addDefinitions('{{ define "r" }}{{ template "r" . }}{{ end }}', 'templates/r.yaml');
    expect(() => ts.render('{{ template "r" . }}', 'b.yaml', {})).toThrow(
      /templates\/r\.yaml:1: template: template calls nested deeper than 200/,
    );
    expect(() =>
      ts.render(
        '{{ range 2000 }}{{ range 2000 }}xxxxx{{ end }}{{ end }}',
        'b.yaml',
        {},
        { maxOutput: 1_000_000, maxDepth: 10 },
      ),
    ).toThrow(/output is larger than 1000000/);
  });

  it('reports errors inside a shared template at the template file line', () => {
    const ts = new TemplateSet();
    ts.addDefinitions('{{ define "d" }}\n{{ .Values.x.y.z }}{{ end }}', 'templates/d.yaml');
    expect(() => ts.render('{{ template "d" . }}', 'b.yaml', { Values: { x: 'str' } })).toThrow(
      /^templates\/d\.yaml:2: template: can't evaluate field y/,
    );
  });

  it('renders one source for many packages from one parse, each with its own values', () => {
    const ts = new TemplateSet();
    ts.addDefinitions('{{ define "n" }}<{{ .Values.name }}>{{ end }}', 'templates/n.yaml');
    const src =
      '{{ define "own" }}[{{ .Values.v }}]{{ end }}{{ template "n" . }}{{ template "own" . }}';
    expect(ts.render(src, 'c/build.yaml', { Values: { name: 'a', v: 1 } })).toBe('<a>[1]');
    expect(ts.render(src, 'c/build.yaml', { Values: { name: 'b', v: 2 } })).toBe('<b>[2]');
    // the source's own define stays its own: another file does not see it
    expect(() => ts.render('{{ template "own" . }}', 'd/build.yaml', {})).toThrow(
      /^d\/build\.yaml:1: template: no template "own" is defined/,
    );
    // a changed source of the same file is parsed anew
    expect(ts.render('x{{ .Values.v }}', 'c/build.yaml', { Values: { v: 3 } })).toBe('x3');
    // a shared template added later is seen by the next render
    ts.addDefinitions('{{ define "n" }}({{ .Values.name }}){{ end }}', 'templates/m.yaml');
    expect(ts.render(src, 'c/build.yaml', { Values: { name: 'c', v: 4 } })).toBe('(c)[4]');
  });

  it('fails again, the same way, on every render of a source that does not parse or check', () => {
    const ts = new TemplateSet();
    for (let i = 0; i < 2; i++) {
      expect(() => ts.render('a\n{{ nosuchfunc 1 }}', 'b.yaml', {})).toThrow(
        /^b\.yaml:2: template: function "nosuchfunc" is not supported/,
      );
      expect(() => ts.render('{{ if }}', 'b.yaml', {})).toThrow(/^b\.yaml:1: template: /);
    }
  });
});
