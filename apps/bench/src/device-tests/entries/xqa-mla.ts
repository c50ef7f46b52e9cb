import '../../../../../packages/xqa/test/xqa-mla.test';
import { main } from '../run';

await main('xqa/test/xqa-mla');
