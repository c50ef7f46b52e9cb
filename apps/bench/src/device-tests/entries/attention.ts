import '../../../../../packages/attention/test/attention.test';
import { main } from '../run';

await main('attention/test/attention');
