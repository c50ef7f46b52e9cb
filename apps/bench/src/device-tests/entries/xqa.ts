import '../../../../../packages/xqa/test/xqa.test';
import { main } from '../run';

await main('xqa/test/xqa');
