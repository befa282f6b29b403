import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** `import` from `files` may reach only `allowed` folders/files of src (besides its own folder). */
function layer(files, up, allowed, message) {
  const dots = '\\.\\./'.repeat(up);
  const ok = allowed.map((a) => a.replace('.', '\\.')).join('|');
  return {
    files,
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ regex: `^${dots}(?!(${ok})(/|$))[^./]`, message }] },
      ],
    },
  };
}

function layerRules() {
  const model = 'imports only errors and util';
  const lib = 'imports only package/, errors and util';
  return [
    {
      // the CLI sits on top: no library imports it (first: the layer entries below replace it)
      files: ['src/**/*.ts'],
      ignores: ['src/cli/**'],
      rules: {
        'no-restricted-imports': [
          'error',
          {
            patterns: [{ regex: '^(\\.\\./)+cli(/|$)', message: 'only src/cli imports the CLI' }],
          },
        ],
      },
    },
    layer(['src/util/**/*.ts'], 1, ['errors.js'], 'util/ imports only errors'),
    layer(['src/package/**/*.ts'], 1, ['errors.js', 'util'], `package/ ${model}`),
    layer(['src/tree/*.ts'], 1, ['errors.js', 'util', 'package'], `tree/ ${lib}`),
    layer(['src/tree/template/*.ts'], 2, ['errors.js', 'util', 'package'], `tree/ ${lib}`),
    layer(['src/resolver/**/*.ts'], 1, ['errors.js', 'util', 'package'], `resolver/ ${lib}`),
    layer(['src/oci/**/*.ts'], 1, ['errors.js', 'util', 'package'], `oci/ ${lib}`),
  ];
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'out/**', 'bench/.work/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-explicit-any': 'error',
    },
  },
  // Layer rules (docs/architecture.md): each folder imports only the layers below it. Relative
  // specifiers only: src has no path aliases. Dynamic import() is not checked by this rule.
  ...layerRules(),
  {
    // the CommonJS entry (bin/package.json): starts without the ESM loader
    files: ['bin/**/*.js'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: { require: 'readonly', __dirname: 'readonly', setImmediate: 'readonly' },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
