import { webinferProject } from '../../vitest.shared.ts';

export default webinferProject('web');
