/** Public API of the OCI area: blob store, registry client, layouts, images, package images. */
export * from './types.js';
export * from './digest.js';
export * from './hashing-stream.js';
export * from './blobstore.js';
export * from './reference.js';
export * from './auth.js';
export * from './registry.js';
export * from './layout.js';
export * from './platform.js';
export * from './endpoint.js';
export * from './image.js';
export * from './layer.js';
export * from './package-image.js';
export * from './actions.js';
