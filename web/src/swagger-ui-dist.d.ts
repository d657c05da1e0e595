// swagger-ui-dist ships no types; the docs page uses only SwaggerUIBundle.
declare module 'swagger-ui-dist' {
	export const SwaggerUIBundle: (config: Record<string, unknown>) => unknown;
}
