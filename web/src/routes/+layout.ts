// The dashboard renders in the browser only; the control plane serves index.html for its routes.
export const ssr = false;
export const prerender = false;
export const trailingSlash = 'ignore';
